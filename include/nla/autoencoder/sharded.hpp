// The AR and the AV under FSDP-style sharding (src/dist/), for SFT and GRPO trainers.
//
// The models stay plain (Reconstructor, Qwen2Model); these wrappers apply the sharding
// from outside: the trunk/model's units are sharded by dist::ShardedModel, the AR's value
// head is one more sharded unit ("value_head.weight"). All members are collective over the
// communicator: every rank calls them in the same order, each with its own rows (at least
// one row per call). Losses are sums over the rows times `loss_scale`, and gradients are
// summed over ranks (not averaged): with loss_scale = 1 / (global rows of the step), the
// step's gradient is that of the mean over the global batch whatever the rank count.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nla/dist/adamw.hpp"
#include "nla/dist/communicator.hpp"
#include "nla/dist/fsdp.hpp"
#include "nla/model/qwen2.hpp"
#include "nla/autoencoder/checkpoint.hpp"
#include "nla/autoencoder/prompts.hpp"
#include "nla/autoencoder/reconstructor.hpp"
#include "nla/tokenizer/tokenizer.hpp"

namespace nla::autoencoder {

// The NLA's one optimizer configuration (DESIGN section 1, as the authors train): AdamW with
// betas (0.9, 0.95) and eps 1e-8, for the AR and the AV, in SFT and in GRPO alike.
inline dist::AdamWOptions nla_adamw(double lr, double weight_decay) {
  dist::AdamWOptions options;
  options.lr = lr;
  options.beta1 = 0.9;
  options.beta2 = 0.95;
  options.eps = 1e-8;
  options.weight_decay = weight_decay;
  return options;
}

class ShardedReconstructor {
 public:
  // objective: what accumulate_gradients minimises (the AR's target; mse_nrm by default).
  ShardedReconstructor(autoencoder::Reconstructor ar, dist::Communicator comm, dist::FsdpOptions options = {},
                       autoencoder::ArObjective objective = {});

  int64_t layer() const { return layer_; }
  int64_t d_model() const { return sharded_->config().hidden_size; }
  const std::string& critic_template() const { return critic_template_; }
  dist::ShardedModel& sharded() { return *sharded_; }
  const autoencoder::ArObjective& objective() const { return objective_; }

  // Adds the gradient of loss_scale * sum_i objective(AR(batch)_i, targets_i) to the shards.
  // targets: (B, d). Returns the per-row objective (B) fp32 on the CPU.
  at::Tensor accumulate_gradients(const autoencoder::ArBatch& batch, const at::Tensor& targets, double loss_scale);
  // h_hat (B, d) fp32, no gradient.
  at::Tensor predict(const autoencoder::ArBatch& batch);
  // A plain Reconstructor with the full fp32 parameters, on every rank.
  autoencoder::Reconstructor gather();
  // Gathers and writes an AR checkpoint (rank 0 writes; every rank returns after it exists).
  void save_checkpoint(const autoencoder::NlaMeta& meta, const std::string& directory, const std::string& tokenizer_dir);

 private:
  std::unique_ptr<dist::ShardedModel> sharded_;
  int64_t layer_ = 0;
  std::string critic_template_;
  autoencoder::ArObjective objective_;
};

// A right-padded batch of AV sequences: the AV prompt (marker injected) then the answer.
// The prompt is the same for every row, so the answers all start at position P and their
// tokens form an (B, A) window, A the longest answer.
struct AvBatch {
  at::Tensor input_ids;       // (B, P + A) int64
  at::Tensor attention_mask;  // (B, P + A) int64
  at::Tensor answer_ids;      // (B, A) int64: the answer tokens (padding where masked)
  at::Tensor answer_mask;     // (B, A) bool: true at real answer tokens
  int64_t answer_start = 0;   // P
  model::Injection injection; // one vector per row at the marker position, h * s / |h|
  double temperature = 1.0;   // log-probs of softmax(logits / T): GRPO scores the distribution its rollouts sampled
};

// prompt: the AV prompt (autoencoder::av_prompt); activations: (B, d); answers: B token id
// lists (autoencoder::answer_ids, or a rollout's generated tokens), each non-empty.
AvBatch make_av_batch(const autoencoder::AvPrompt& prompt, const at::Tensor& activations,
                      const std::vector<std::vector<int64_t>>& answers, double injection_scale, c10::Device device,
                      c10::ScalarType dtype);

class ShardedVerbalizer {
 public:
  ShardedVerbalizer(model::Qwen2Model av, dist::Communicator comm, dist::FsdpOptions options = {});

  dist::ShardedModel& sharded() { return *sharded_; }

  // token_logprobs: (B, A) fp32 with gradient, log p(answer[a] | prompt, answer[< a]),
  // 0 where answer_mask is false. loss_fn returns the scalar loss to differentiate
  // (already scaled by the caller). Returns the loss value. Logits are computed at the
  // answer window only (B, A, V), not over the prompt.
  using LogprobLoss = std::function<at::Tensor(const at::Tensor& token_logprobs)>;
  double accumulate_gradients(const AvBatch& batch, const LogprobLoss& loss_fn);
  // SFT: loss_scale * (the rows' summed cross-entropy over their answer tokens; with
  // `sequence_mean`, each row's mean over its tokens instead). Returns per-row (that row's
  // loss, answer token count) as (B, 2) float64 on the CPU.
  at::Tensor accumulate_sft_gradients(const AvBatch& batch, double loss_scale, bool sequence_mean = false);
  // (B, A) fp32 token log-probs as above, no gradient.
  at::Tensor token_logprobs(const AvBatch& batch);
  // A plain model with the full parameters in the compute dtype, on every rank (rollouts).
  model::Qwen2Model gather();
  void save_checkpoint(const autoencoder::NlaMeta& meta, const std::string& directory, const std::string& tokenizer_dir);

 private:
  std::unique_ptr<dist::ShardedModel> sharded_;
};

}  // namespace nla::autoencoder
