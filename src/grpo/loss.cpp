// The GRPO objective (see loss.hpp).
#include "nla/grpo/loss.hpp"

#include <ATen/ATen.h>

#include <cmath>

#include "nla/core/error.hpp"

namespace nla::grpo {

std::vector<double> group_advantages(const std::vector<double>& rewards, int64_t samples_per_activation,
                                     const AdvantageOptions& options) {
  const auto k = static_cast<size_t>(samples_per_activation);
  NLA_CHECK(k >= 2 && rewards.size() % k == 0, "group_advantages: ", rewards.size(), " rewards in groups of ", k);
  std::vector<double> advantages(rewards.size());
  for (size_t first = 0; first < rewards.size(); first += k) {
    double mean = 0;
    for (size_t j = 0; j < k; ++j) mean += rewards[first + j];
    mean /= static_cast<double>(k);
    double squares = 0;
    for (size_t j = 0; j < k; ++j) squares += (rewards[first + j] - mean) * (rewards[first + j] - mean);
    double scale = options.scale_by_std ? 1.0 / (std::sqrt(squares / static_cast<double>(k - 1)) + options.eps) : 1.0;
    for (size_t j = 0; j < k; ++j) advantages[first + j] = (rewards[first + j] - mean) * scale;
  }
  return advantages;
}

KlEstimator parse_kl_estimator(const std::string& name) {
  if (name == "k3") return KlEstimator::k3;
  if (name == "k1") return KlEstimator::k1;
  NLA_INPUT_ERROR("option 'kl-estimator': expected k1 or k3, got '", name, "'");
}

LossAggregation parse_loss_aggregation(const std::string& name) {
  if (name == "sequence") return LossAggregation::sequence;
  if (name == "token") return LossAggregation::token;
  NLA_INPUT_ERROR("option 'loss-aggregation': expected sequence or token, got '", name, "'");
}

LossSums grpo_loss_sums(const at::Tensor& logprobs, const at::Tensor& old_logprobs, const at::Tensor& ref_logprobs,
                        const at::Tensor& advantages, const at::Tensor& mask, const LossOptions& options) {
  NLA_CHECK(logprobs.dim() == 2 && old_logprobs.sizes() == logprobs.sizes() && ref_logprobs.sizes() == logprobs.sizes() &&
                mask.sizes() == logprobs.sizes() && advantages.dim() == 1 && advantages.size(0) == logprobs.size(0),
            "grpo_loss_sums: logprobs (B, A), old/ref/mask (B, A), advantages (B)");
  const auto dtype = logprobs.scalar_type();
  at::Tensor weight = mask.to(dtype);                                        // (B, A)
  at::Tensor old = old_logprobs.to(dtype).detach(), ref = ref_logprobs.to(dtype).detach();
  at::Tensor advantage = advantages.to(dtype).detach().unsqueeze(1);         // (B, 1)
  // Masked positions get logp = old = ref, so exp() stays finite whatever padding holds.
  at::Tensor logp = at::where(mask, logprobs, old);                          // (B, A)
  at::Tensor ratio = at::exp(logp - old);                                    // (B, A)
  at::Tensor unclipped = ratio * advantage;
  at::Tensor clipped = at::clamp(ratio, 1.0 - options.clip_eps, 1.0 + options.clip_eps) * advantage;
  at::Tensor surrogate = at::minimum(unclipped, clipped);                    // (B, A)
  at::Tensor log_ref_over_p = ref - logp;                                    // (B, A)
  at::Tensor k3 = at::exp(log_ref_over_p) - log_ref_over_p - 1.0;            // (B, A)
  at::Tensor kl = options.kl_estimator == KlEstimator::k3 ? k3 : -log_ref_over_p;  // (B, A)
  at::Tensor row_tokens = weight.sum(1, /*keepdim=*/true);                   // (B, 1)
  // sequence: each row's tokens weigh 1 / its token count, so a row adds its mean loss_t.
  at::Tensor loss_weight =
      options.aggregation == LossAggregation::token ? weight : weight / at::clamp_min(row_tokens, 1.0);  // (B, A)
  LossSums sums;
  sums.loss = ((-surrogate + options.kl_coef * kl) * loss_weight).sum();
  sums.kl = (k3.detach() * weight).sum().item<double>();
  sums.clipped = ((clipped.detach() < unclipped.detach()).to(dtype) * weight).sum().item<double>();
  sums.tokens = weight.sum().item<double>();
  sums.sequences = (row_tokens > 0).sum().item<double>();
  return sums;
}

}  // namespace nla::grpo
