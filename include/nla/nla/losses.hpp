// The NLA's losses and metrics (DESIGN sections 1 and 5).
//
//   mse_nrm(x, y): both rows scaled to norm sqrt(d), then the per-dimension MSE; equals
//                  2 (1 - cos(x, y)). AR SFT minimises it; GRPO's reward is its negative.
//   var_nrm(X):    the mean per-dimension variance of the rows of X scaled to norm sqrt(d)
//                  (the training activations; stored with the AR checkpoint).
//   fve_nrm:       1 - mse_nrm / var_nrm (0 = as good as predicting the mean direction).
//   av_sft_loss:   next-token cross-entropy on the answer tokens only.
// Everything is computed in fp32 whatever the input dtype.
#pragma once

#include <ATen/core/Tensor.h>

namespace nla::autoencoder {

// x, y: (N, d) -> (N) fp32.
at::Tensor mse_nrm(const at::Tensor& x, const at::Tensor& y);
// x: (N, d) -> (N, d) fp32, each row at norm sqrt(d).
at::Tensor normalise_rows(const at::Tensor& x);
// x: (N, d) -> the scalar var_nrm.
double var_nrm(const at::Tensor& x);
inline double fve_nrm(double mean_mse_nrm, double var_nrm) { return 1.0 - mean_mse_nrm / var_nrm; }

// logits (B, T, V) of the sequence input_ids (B, T); answer_mask (B, T) true where the token
// is part of the answer (it is predicted from the position before it). Returns the mean
// cross-entropy over the answer tokens, a scalar fp32 tensor that carries the gradient.
at::Tensor av_sft_loss(const at::Tensor& logits, const at::Tensor& input_ids, const at::Tensor& answer_mask);

}  // namespace nla::autoencoder
