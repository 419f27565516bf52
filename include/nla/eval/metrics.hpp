// Reconstruction metrics of the evaluation sweep (DESIGN section 5), per sample, in
// float64 whatever the input dtype. x is the true activation, y the prediction, mu the
// layer's mean activation; all (N, d) row-major except mu (d).
//
//   cosine      x.y / (|x||y|)
//   fve_sample  1 - |x - y|^2 / |x - mu|^2   (per sample, for the paired tests)
//   nrmse       sqrt(mean((x/|x| - y/|y|)^2))
//   mse_nrm  mean((x sqrt(d)/|x| - y sqrt(d)/|y|)^2) = 2 (1 - cosine)
//   recall@k 1 when fewer than k of the distractors have a strictly higher cosine to y
//            than x has (ties count for x)
// The layer's figure (the published reproduction's, kameshkanna/nla-train):
//   fve         1 - sum_d Var_i(x_id - y_id) / sum_d Var_i(x_id)   over the layer's samples i
// (a constant offset of y costs nothing; predicting the mean scores exactly 0).
// A zero vector normalises to the zero vector (cosine 0 with anything); a sample with
// x == mu has fve_sample -inf, 0 or nan as the division gives (the layer figure is what to read).
// Every raw metric compares x with y in the activation's scale: to_activation_scale puts an
// AR's output there first.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "nla/autoencoder/losses.hpp"

namespace nla::eval {

struct SampleMetrics {
  at::Tensor cosine;      // (N) float64
  at::Tensor fve_sample;  // (N)
  at::Tensor nrmse;       // (N)
  at::Tensor mse_nrm;     // (N)
};

SampleMetrics sample_metrics(const at::Tensor& truth, const at::Tensor& prediction, const at::Tensor& mean);

// 1 - sum_d Var_i(x_id - y_id) / sum_d Var_i(x_id) over the rows (population variances).
double layer_fve(const at::Tensor& truth, const at::Tensor& prediction);

// An AR's outputs (N, d) in the activation's scale (DESIGN section 5): an AR trained on
// normalised targets predicts a direction, mapped to y / |y| * norm (norm: the evaluated
// layer's median activation norm, never the truth's own); a raw AR's output is kept as it
// is. float64; a zero row stays zero.
at::Tensor to_activation_scale(const at::Tensor& ar_output, autoencoder::ArTarget target, double norm);

// The median of the rows' L2 norms (float64).
double median_norm(const at::Tensor& rows);

// Mean per-dimension variance of the rows after scaling each to norm sqrt(d): fve_nrm's
// denominator (stored with AR checkpoints).
double var_nrm(const at::Tensor& rows);

// distractors: (N, P) int64 row indices into `pool` (M, d). Returns (N) float64 of 0/1.
at::Tensor recall_at_k(const at::Tensor& truth, const at::Tensor& prediction, const at::Tensor& pool,
                       const at::Tensor& distractors, int64_t k = 10);

// (N, P) distinct indices in [0, M) drawn for each sample i, never i itself (sample i's
// own row in the pool), from a generator seeded by (seed, i): the same draw whatever the
// batch or rank that asks for it.
at::Tensor draw_distractors(int64_t first_sample, int64_t n, int64_t pool_size, int64_t per_sample, uint64_t seed);

// The median of `values` (the mean of the middle two for an even count); NaN for none.
double median_of(std::vector<double> values);

// CLC matrix: mean over samples of cos(R[i, s], R[j, s]); reconstructions (L, n, d).
at::Tensor clc_matrix(const at::Tensor& reconstructions);

}  // namespace nla::eval
