// The NLA's losses and metrics (DESIGN sections 1 and 5).
//
//   mse_nrm(x, y): both rows scaled to norm sqrt(d), then the per-dimension MSE; equals
//                  2 (1 - cos(x, y)). AR SFT minimises it; GRPO's reward is its negative.
//   var_nrm(X):    the mean per-dimension variance of the rows of X scaled to norm sqrt(d)
//                  (the training activations; stored with the AR checkpoint).
//   fve_nrm:       1 - mse_nrm / var_nrm (0 = as good as predicting the mean direction).
//   av_sft_loss:   next-token cross-entropy on the answer tokens only.
//   ArObjective:   what the AR is trained on and GRPO rewards: the authors' mse_nrm on
//                  directions (ArTarget::normalized), or the reproduction's MSE against the
//                  raw activation (ArTarget::raw), divided by var_raw (the training
//                  activations' mean per-dimension variance) so that the mean predictor
//                  scores 1 and the reward -1, as -mse_nrm gives the mean direction ~ -var_nrm.
// Everything is computed in fp32 whatever the input dtype.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

namespace nla::autoencoder {

enum class ArTarget { normalized, raw };
// "normalized" | "raw"; InputError naming `where` otherwise.
ArTarget parse_ar_target(const std::string& text, const std::string& where);
const char* ar_target_name(ArTarget target);

// The AR's loss per row (N) fp32 against targets x (N, d): normalized -> mse_nrm(y, x);
// raw -> mean_d (y - x)^2 / var_raw. Minimised by AR SFT and the AR refresh in GRPO; the
// GRPO reward of a successful sample is its negative.
struct ArObjective {
  ArTarget target = ArTarget::normalized;
  double var_raw = 1.0;  // raw only: > 0
  at::Tensor per_row(const at::Tensor& prediction, const at::Tensor& target_rows) const;
  const char* name() const { return target == ArTarget::normalized ? "mse_nrm" : "mse/var"; }
};

// x, y: (N, d) -> (N) fp32.
at::Tensor mse_nrm(const at::Tensor& x, const at::Tensor& y);
// x: (N, d) -> (N, d) fp32, each row at norm sqrt(d).
at::Tensor normalise_rows(const at::Tensor& x);
// x: (N, d) -> the scalar var_nrm.
double var_nrm(const at::Tensor& x);
// x: (N, d) -> the mean per-dimension variance of the raw rows (var_raw).
double var_raw(const at::Tensor& x);
inline double fve_nrm(double mean_mse_nrm, double var_nrm) { return 1.0 - mean_mse_nrm / var_nrm; }

// logits (B, T, V) of the sequence input_ids (B, T); answer_mask (B, T) true where the token
// is part of the answer (it is predicted from the position before it). Returns the mean
// cross-entropy over the answer tokens, a scalar fp32 tensor that carries the gradient.
at::Tensor av_sft_loss(const at::Tensor& logits, const at::Tensor& input_ids, const at::Tensor& answer_mask);

}  // namespace nla::autoencoder
