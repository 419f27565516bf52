// Anchor coverage: which anchors (AV/AR pairs, one `nla eval` run each) reconstruct which
// layers well, and the smallest set of anchors that keeps every layer of a range at or
// above a threshold of the mean `av` cosine. `nla eval` with several anchors and
// `nla eval-merge` of such runs write it as RUN/coverage.csv and RUN/coverage.json;
// analysis/nla_coverage.py computes the same from run directories, and the two agree
// byte for byte on coverage.csv (tests/eval/test_sweep.cpp). The rules, shared with that
// script:
//   - mean of anchor a at layer l: numpy's nanmean of /metrics/av/<metric>[l] of its
//     results.h5 (numpy's pairwise summation, so the doubles are numpy's);
//   - best anchor of a layer: the highest mean, ties to the earlier anchor (runs in anchor
//     layer order);
//   - a covers l when its mean >= min_cosine; layers no anchor covers are reported and left
//     out of the cover;
//   - smallest set: with <= exact_limit anchors an exact search over subsets by increasing
//     size, in itertools.combinations order, keeping the first with the highest summed best
//     mean over the covered layers (sums left to right in layer order); beyond, the greedy
//     set cover (most newly covered layers, then the highest summed mean over the range).
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace nla::eval {

struct CoverageOptions {
  std::string layers = "all";  // the range to cover: all (every evaluated layer) | A-B | A
  double min_cosine = 0.5;
  std::string metric = "cosine";
  int64_t exact_limit = 20;  // anchors up to which the subset search is exact
};

// One anchor's run: its name in the tables (the run directory's name, e.g. anchor_20).
struct AnchorMeans {
  std::string name;
  int anchor = -1;
  std::map<int, double> means;  // layer -> nanmean of /metrics/av/<metric>
};

struct CoverageRow {
  int layer = 0;
  bool in_range = false;
  int best = -1;  // index into the runs; -1: no run has a finite mean here
  double best_mean = 0;
};

struct CoverageResult {
  std::vector<int> range;          // the layers to cover
  std::vector<CoverageRow> rows;   // every layer of the range or of any run, ascending
  std::vector<size_t> chosen;      // indices into the runs, ascending
  std::string method;              // "exact" | "greedy"
  std::vector<int> uncovered;      // range layers no anchor reaches
  double best_achievable_minimum;  // min over the range of the best mean (NaN: a layer without data)
  int weakest_layer = -1;          // where that minimum is
  double chosen_minimum;           // min over the range of the chosen set's best mean (NaN when uncovered)
  std::string statement;           // one sentence: the set, or "No set of anchors keeps ..."
};

// Reads RUN/results.h5 (format nla-eval) for its anchor layer and per-layer means.
AnchorMeans read_anchor_means(const std::string& run_dir, const std::string& name, const std::string& metric);

// np.nanmean of n doubles, bit for bit (NaN when every value is NaN).
double numpy_nanmean(const double* values, int64_t n);

// "all" -> every layer of `evaluated`; "A-B" / "A" -> those layers (they need not all be
// evaluated: an absent one is uncovered). InputError naming option 'coverage-layers'.
std::vector<int> coverage_range(const std::string& spec, const std::vector<int>& evaluated);

// covers[a]: range layers anchor a reaches; scores[a]: its means. Returns the chosen
// indices (ascending) and sets `method`.
std::vector<size_t> choose_cover(const std::vector<std::set<int>>& covers,
                                 const std::vector<std::map<int, double>>& scores, const std::vector<int>& range,
                                 int64_t exact_limit, std::string& method);

CoverageResult compute_coverage(const std::vector<AnchorMeans>& runs, const std::vector<int>& range,
                                const CoverageOptions& options);

// DIR/coverage.csv (layer,in_range,best_anchor,best_mean,best_run,<one column per run>)
// and DIR/coverage.json (last: its presence marks a complete multi-anchor run), both atomic.
void write_coverage(const std::string& dir, const std::vector<AnchorMeans>& runs, const CoverageResult& result,
                    const CoverageOptions& options, const std::string& created_by);

// Python's repr() of a float ('0.1', '1e-05', '2.0', 'nan'): the CSV's number format.
std::string python_float_repr(double value);

}  // namespace nla::eval
