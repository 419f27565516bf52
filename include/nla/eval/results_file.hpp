// What `nla eval` writes: results.h5 (DESIGN section 5; format "nla-eval", version below) and
// summary.csv, and how split sweeps are merged (`nla eval-merge`). Serial: rank 0 only.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

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
