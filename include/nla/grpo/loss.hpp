// The GRPO objective (DESIGN section 1): group-relative advantages, the clipped ratio and
// a KL estimate to the frozen SFT AV in the loss.
//
//   advantage  A_i = (r_i - mean_g) / (std_g + eps), g = the K samples of i's activation,
//              std_g the sample (Bessel) standard deviation as TRL computes it; with
//              scale_by_std = false, A_i = r_i - mean_g (Dr. GRPO).
//   per token  rho = exp(logp - logp_old)
//              surrogate = min(rho A, clip(rho, 1 - eps_clip, 1 + eps_clip) A)
//              k3 = exp(logp_ref - logp) - (logp_ref - logp) - 1   (>= 0, unbiased KL(pi || ref); default)
//              k1 = logp - logp_ref                                (the authors' stack's default: its
//                   expected gradient on-policy is zero, so their KL term barely acts)
//              loss_t = -surrogate + kl_coef * kl_t
//   batch      sequence (default, the authors'): the mean of loss_t over each sample's answer
//              tokens, then the mean over the step's samples;
//              token: the sum of loss_t over every answer token of the step / the step's tokens.
// The sums are what each rank computes over its own rows; dividing by the global count of
// samples or tokens (not the rank's) keeps the update the same on any rank count.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace nla::grpo {

struct AdvantageOptions {
  bool scale_by_std = true;
  double eps = 1e-4;
};

// rewards: N * K values, activation-major (i * K + j). Returns the N * K advantages.
std::vector<double> group_advantages(const std::vector<double>& rewards, int64_t samples_per_activation,
                                     const AdvantageOptions& options = {});

enum class KlEstimator { k1, k3 };
enum class LossAggregation { sequence, token };
// "k1" | "k3", "sequence" | "token"; InputError naming the option otherwise.
KlEstimator parse_kl_estimator(const std::string& name);
LossAggregation parse_loss_aggregation(const std::string& name);

struct LossOptions {
  double clip_eps = 0.2;
  double kl_coef = 0.01;
  KlEstimator kl_estimator = KlEstimator::k3;
  LossAggregation aggregation = LossAggregation::sequence;
};

// Sums over the masked tokens, for metrics and the loss. `loss` carries the gradient
// with respect to logprobs; the others are detached doubles.
struct LossSums {
  at::Tensor loss;          // scalar: sum of loss_t (token), or sum over rows of their mean loss_t (sequence)
  double kl = 0;            // sum of k3 over the tokens, whichever estimator the loss uses (a metric)
  double clipped = 0;       // tokens whose surrogate took the clipped branch
  double tokens = 0;        // masked tokens
  double sequences = 0;     // rows with at least one masked token
};

// What `loss` is divided by, summed over the whole step: its tokens or its samples.
inline double loss_units(LossAggregation aggregation, double tokens, double sequences) {
  return aggregation == LossAggregation::token ? tokens : sequences;
}

// logprobs (B, A) with grad; old_logprobs, ref_logprobs (B, A) without; advantages (B);
// mask (B, A) bool. Computed in the dtype of logprobs (fp32 in training, fp64 in tests).
LossSums grpo_loss_sums(const at::Tensor& logprobs, const at::Tensor& old_logprobs, const at::Tensor& ref_logprobs,
                        const at::Tensor& advantages, const at::Tensor& mask, const LossOptions& options);

}  // namespace nla::grpo
