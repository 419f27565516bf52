// The evaluation sweep (`nla eval`, DESIGN section 5): the anchor-layer AV and AR run on
// the activations of every requested layer of held-out texts; per-sample metrics per
// (layer, condition), reconstructions, descriptions, CLC matrix and PCA data.
//
// Conditions, each scored against the true activation x_i of sample i of a layer:
//   av         AR(AV(x_i))
//   random     AR(AV(g_i)), g_i standard Gaussian seeded by (seed, layer, store row)
//   shuffled   AR(AV(x_pi(i))) with pi a random cyclic permutation (no fixed point) of the
//              layer's samples, seeded by (seed, layer); pi(i) may share i's document (another
//              position of it). The AR is deterministic, so this is the av reconstruction of
//              sample pi(i): reused, not regenerated.
//   mean       the layer's mean activation (over the evaluated samples) as the prediction
//   av_normed  every activation rescaled to the anchor layer's median norm first. The AV
//              input is rescaled to norm s by the injection (h s / |h|), so AV(c x) = AV(x)
//              and the av descriptions and reconstructions are reused; what changes is the
//              truth the reconstruction is scored against (x_i scaled to that norm, with
//              its mean and distractor pool scaled alike). Scale-free metrics (cosine,
//              nrmse, mse_nrm, fve_nrm, recall10) therefore equal av's; fve differs: it
//              removes the norm mismatch between layer l and the anchor layer that the AR
//              cannot know about.
// A failed description (no closed answer tag) is still read by the AR as the raw generated
// text, so every sample has a prediction; the failures are flagged per sample.
//
// Work spreads over ranks in fixed tasks (layer, block of `batch` samples), task t on rank
// t % size; blocks and seeds do not depend on the rank count. The metrics are spread too:
// layer i (its blocks gathered there) is scored on rank i % size, metrics of every
// condition and its PCA; rank 0 collects the scored layers, computes the CLC (it needs every
// layer) and writes. So results.h5 is the same on any number of ranks (at equal threads per
// rank). Several anchors in one run: include/nla/eval/anchors.hpp.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "nla/eval/coverage.hpp"

namespace nla::eval {

inline constexpr const char* kEvalFormat = "nla-eval";
inline const std::vector<std::string> kConditions = {"av", "random", "shuffled", "mean", "av_normed"};
// Per-sample metrics (/metrics/<condition>/<metric>, (L, n)) and per-layer figures
// (/layer_metrics/<condition>/<metric>, (L)); include/nla/eval/metrics.hpp defines them.
inline const std::vector<std::string> kMetrics = {"cosine", "recall10", "fve_sample", "nrmse", "mse_nrm", "fve_nrm"};
inline const std::vector<std::string> kLayerMetrics = {"fve"};
inline constexpr int64_t kEvalVersion = 2;  // 2: reconstructions in the activation's scale, fve per layer
// Conditions whose descriptions are generated (the others reuse av's or need none).
inline const std::vector<std::string> kGeneratedConditions = {"av", "random"};

struct SweepOptions {
  std::string av;                  // AV checkpoint directory (several, comma-separated: anchors.hpp)
  std::string ar;                  // AR checkpoint directory (its layer is the anchor)
  std::string model;               // base checkpoint: tokenizer fallback, recorded
  std::string store;               // held-out activation store
  std::string layers = "all";      // "all" | "3" | "0-5,8"
  std::string out;                 // run directory
  int64_t samples = 2000;          // store rows evaluated (the same rows at every layer)
  int64_t seed = 0;
  int64_t batch = 32;              // samples per task (generation and AR batch)
  int64_t max_new_tokens = 150;
  double temperature = 0.0;        // 0: greedy
  double top_p = 1.0;
  int64_t pool = 500;              // recall@10 candidates: the truth + pool - 1 distractors (store rows of the
                                   // layer: the evaluated ones, then more of the store's when they are fewer)
  std::string pca_layers = "all";  // layers with PCA data ("" none, "all", list)
  std::string var_nrm_source = "auto";  // auto: the AR's nla_meta.yaml, else the layer's; meta | layer
  std::string av_descriptions;     // "": generate with the AV; NAME: /descriptions/NAME of the store (labeler oracle)
  int64_t max_tokens = 256;        // AR inputs keep their last N tokens
  std::string device = "auto";     // auto | cpu | cuda | cuda:N (nla/dist/device.hpp)
  std::string precision = "auto";  // auto (bf16 on a GPU, fp32 on the CPU) | fp32 | bf16: the AV's and AR's dtype
  bool overwrite = false;
  CoverageOptions coverage;        // several anchors only: RUN/coverage.csv
};

struct PcaData {
  at::Tensor truth;           // (n, 2) float32
  at::Tensor reconstruction;  // (n, 2) float32: av reconstructions on the truth's components
  double explained_variance[2] = {0, 0};  // fraction of the truth's variance
};

// Everything results.h5 holds; `nla eval` fills it, `nla eval-merge` concatenates parts.
struct SweepResults {
  std::vector<int> layers;
  int anchor_layer = -1;
  std::vector<int64_t> rows;       // store rows, the same at every layer (n)
  std::vector<int64_t> documents;  // their documents (n)
  std::vector<int32_t> positions;  // their token positions (n)
  std::map<std::string, std::map<std::string, at::Tensor>> metrics;  // condition -> metric -> (L, n) float64
  std::map<std::string, std::map<std::string, at::Tensor>> layer_metrics;  // condition -> fve -> (L) float64
  // av, random -> (L, n, d) float32: the AR's outputs in the activation's scale (what was scored)
  std::map<std::string, at::Tensor> reconstructions;
  std::string ar_target;           // "normalized" (outputs mapped to the layer's median norm) | "raw" (as they are)
  at::Tensor median_norm;          // (L) float64: median norm of each layer's evaluated rows
  at::Tensor reconstruction_scale; // (L) float64: the norm reconstructions were mapped to; NaN for a raw AR
  std::vector<int64_t> pool_rows;  // store rows of the recall candidates (the evaluated rows first)
  std::map<std::string, std::vector<std::string>> descriptions;      // av, random -> L * n, layer-major
  std::map<std::string, at::Tensor> failed;                          // av, random -> (L, n) uint8
  at::Tensor permutation;          // (L, n) int64: shuffled's pi per layer
  at::Tensor means;                // (L, d) float32: the mean condition's prediction
  at::Tensor var_nrm;              // (L) float64: fve_nrm's denominator per layer
  std::string var_nrm_source;      // "meta" | "layer"
  double anchor_median_norm = 0;   // av_normed's target norm
  int64_t recall_pool = 0;         // candidates per sample (truth included)
  at::Tensor clc;                  // (L, L) float64 over av reconstructions
  std::map<int, PcaData> pca;
  std::map<std::string, std::string> attributes;  // created_by, av, ar, store, model, config ...
};

// Runs the sweep (collective over MPI_COMM_WORLD); rank 0 writes <out>/results.h5 and
// <out>/summary.csv. `announce` runs once the inputs are validated.
void run_sweep(const SweepOptions& options, const std::string& created_by, const std::function<void()>& announce = {});

// CLC matrix: mean over samples of cos(R[i, s], R[j, s]); reconstructions (L, n, d).
at::Tensor clc_matrix(const at::Tensor& reconstructions);

// Results file I/O (serial). write_results writes to a temporary name and renames.
void write_results(const SweepResults& results, const std::string& path);
SweepResults read_results(const std::string& path);
// summary.csv: layer,condition,metric,mean,median,std,n (NaN samples skipped; "failed"
// rows give the fraction of failed descriptions of the generated conditions).
void write_summary_csv(const SweepResults& results, const std::string& path);

// Merges part run directories (disjoint layers, same rows, anchor and conditions) into one
// results set as a single run over all their layers would give; CLC recomputed.
SweepResults merge_results(const std::vector<SweepResults>& parts);

}  // namespace nla::eval
