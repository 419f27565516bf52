// Several anchors in one `nla eval` (and in `nla eval-merge`): each AV is paired with the AR
// trained at the same anchor layer, read from their nla_meta.yaml (critic.
// extraction_layer_index; an AR without it: its config.json layer count - 1). Each anchor
// is one complete single-anchor sweep in RUN/anchor_<L>/ (the same files, bit-identical
// results.h5, as `nla eval --av AV --ar AR --out RUN/anchor_<L>` with the same options),
// then RUN/coverage.csv and RUN/coverage.json (include/nla/eval/coverage.hpp) from them.
//
//   RUN/config.ini, provenance.json      the several-anchor command
//   RUN/anchor_<L>/                      results.h5, summary.csv, config.ini (this anchor's
//                                        av/ar/out: reruns it alone), provenance.json
//   RUN/coverage.csv, coverage.json      written last: coverage.json marks a complete run
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "nla/eval/coverage.hpp"
#include "nla/eval/sweep.hpp"

namespace nla::eval {

struct AnchorPair {
  int layer = -1;
  std::string av, ar;
  int64_t d_model = 0;
};

// "a,b, c" -> {"a", "b", "c"}: several directories in one option value.
std::vector<std::string> split_list(const std::string& text);

// More than one directory in options.av or options.ar (else the plain single-anchor sweep).
bool has_several_anchors(const SweepOptions& options);

// Pairs by anchor layer, sorted by layer. InputError (one line) for an AV or AR without a
// partner, two AVs or two ARs at one layer, a directory of the wrong role, an AV whose
// nla_meta.yaml names no layer, or d_model differing within a pair or between anchors.
std::vector<AnchorPair> pair_anchors(const std::vector<std::string>& avs, const std::vector<std::string>& ars);

std::string anchor_run_directory(const std::string& run, int layer);  // RUN/anchor_<L>

// The several-anchor sweep (collective). `announce` runs once every input is validated;
// `record_anchor` once per anchor with that anchor's options, after its own validation
// (the command writes its config.ini and provenance.json there).
void run_anchor_sweeps(const SweepOptions& options, const std::string& created_by,
                       const std::function<void()>& announce,
                       const std::function<void(const SweepOptions&)>& record_anchor);

// Rank 0: the coverage of RUN/anchor_* (every subdirectory named anchor_<L> with a
// results.h5) -> RUN/coverage.csv, RUN/coverage.json. Returns the statement.
std::string write_run_coverage(const std::string& run, const CoverageOptions& options, const std::string& created_by);

// `nla eval-merge` (rank 0): part run directories of one sweep split by layer blocks, all
// single-anchor (results.h5) or all several-anchor (coverage.json + anchor_<L>/), into one
// run directory laid out as the unsplit run. A part directory without either stands for
// its subdirectories. `record(dir)` writes the merge's config.ini and provenance.json.
void merge_run_directories(const std::vector<std::string>& parts, const std::string& out, bool overwrite,
                           const std::string& created_by, const std::function<void(const std::string&)>& record);

}  // namespace nla::eval
