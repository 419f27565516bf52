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
#include "nla/eval/metrics.hpp"       // defines: clc_matrix
#include "nla/eval/results_file.hpp"  // defines: SweepResults, write_results, read_results

namespace nla::eval {

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

// Runs the sweep (collective over MPI_COMM_WORLD); rank 0 writes <out>/results.h5 and
// <out>/summary.csv. `announce` runs once the inputs are validated.
void run_sweep(const SweepOptions& options, const std::string& created_by, const std::function<void()>& announce = {});

}  // namespace nla::eval
