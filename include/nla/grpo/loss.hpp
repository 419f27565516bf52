// The GRPO objective (DESIGN section 1): group-relative advantages, the clipped ratio and
// the k3 KL to the frozen SFT AV, aggregated as a token mean over the global batch.
//
//   advantage  A_i = (r_i - mean_g) / (std_g + eps), g = the K samples of i's activation,
//              std_g the sample (Bessel) standard deviation as TRL computes it; with
//              scale_by_std = false, A_i = r_i - mean_g (Dr. GRPO).
//   per token  rho = exp(logp - logp_old)
//              surrogate = min(rho A, clip(rho, 1 - eps_clip, 1 + eps_clip) A)
//              k3 = exp(logp_ref - logp) - (logp_ref - logp) - 1    (>= 0, unbiased KL(pi || ref))
//              loss_t = -surrogate + kl_coef * k3
//   batch      loss = sum over every answer token of every sample of the step / (tokens of the step)
// The sum is what each rank computes over its own rows; dividing by the global token count
// (not the rank's) keeps the update the same on any rank count.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace nla::grpo {

struct AdvantageOptions {
  bool scale_by_std = true;
  double eps = 1e-4;
};

// rewards: N * K values, activation-major (i * K + j). Returns the N * K advantages.
std::vector<double> group_advantages(const std::vector<double>& rewards, int64_t samples_per_activation,
                                     const AdvantageOptions& options = {});

struct LossOptions {
  double clip_eps = 0.2;
  double kl_coef = 0.01;
};

// Sums over the masked tokens, for metrics and the loss. `loss` carries the gradient
// with respect to logprobs; the others are detached doubles.
struct LossSums {
  at::Tensor loss;          // scalar: sum of loss_t
  double kl = 0;            // sum of k3
  double clipped = 0;       // tokens whose surrogate took the clipped branch
  double tokens = 0;        // masked tokens
};

// logprobs (B, A) with grad; old_logprobs, ref_logprobs (B, A) without; advantages (B);
// mask (B, A) bool. Computed in the dtype of logprobs (fp32 in training, fp64 in tests).
LossSums grpo_loss_sums(const at::Tensor& logprobs, const at::Tensor& old_logprobs, const at::Tensor& ref_logprobs,
                        const at::Tensor& advantages, const at::Tensor& mask, const LossOptions& options);

}  // namespace nla::grpo
