// The AR and the AV under FSDP-style sharding (see sharded_nla.hpp).
#include "nla/autoencoder/sharded.hpp"

#include <ATen/ATen.h>

#include <algorithm>

#include "nla/core/error.hpp"
#include "nla/core/world.hpp"
#include "nla/autoencoder/losses.hpp"

namespace nla::autoencoder {

namespace {

constexpr const char* kValueHead = "value_head.weight";

// The wrappers' losses are sums over rows: gradients must be summed over ranks too.
dist::FsdpOptions summed(dist::FsdpOptions options) {
  options.average_gradients = false;
  return options;
}

// hidden (B, T, d) at last_index (B) -> (B, d)
at::Tensor at_last_token(const at::Tensor& hidden, const at::Tensor& last_index) {
  auto index = last_index.view({-1, 1, 1}).expand({-1, 1, hidden.size(2)});  // (B, 1, d)
  return hidden.gather(1, index).squeeze(1);                                 // (B, d)
}

}  // namespace

// ---- AR ----------------------------------------------------------------------------------

ShardedReconstructor::ShardedReconstructor(autoencoder::Reconstructor ar, dist::Communicator comm,
                                           dist::FsdpOptions options, autoencoder::ArObjective objective)
    : layer_(ar.layer()), critic_template_(ar.critic_template()), objective_(objective) {
  at::Tensor head = ar.value_head().detach();
  sharded_ = std::make_unique<dist::ShardedModel>(std::move(ar.trunk()), std::move(comm), summed(options),
                                                  std::vector<dist::ExtraParameter>{{kValueHead, head}});
}

at::Tensor ShardedReconstructor::accumulate_gradients(const autoencoder::ArBatch& batch, const at::Tensor& targets,
                                                      double loss_scale) {
  model::ForwardInput input;
  input.input_ids = batch.input_ids;
  input.attention_mask = batch.attention_mask;
  model::ForwardOptions options;
  options.compute_logits = false;
  at::Tensor per_row;
  sharded_->forward_backward(input, options, [&](const model::ForwardOutput& out) {
    auto last = at_last_token(out.hidden, batch.last_index);                                      // (B, d)
    auto predicted = at::matmul(last, sharded_->extra(kValueHead).t()).to(at::kFloat);             // (B, d)
    per_row = objective_.per_row(predicted, targets.to(predicted.device()));                      // (B)
    return per_row.sum() * loss_scale;
  });
  return per_row.detach().to(at::kCPU);
}

at::Tensor ShardedReconstructor::predict(const autoencoder::ArBatch& batch) {
  model::ForwardInput input;
  input.input_ids = batch.input_ids;
  input.attention_mask = batch.attention_mask;
  model::ForwardOptions options;
  options.compute_logits = false;
  return sharded_->forward_then(input, options, [&](const model::ForwardOutput& out) {
    auto last = at_last_token(out.hidden, batch.last_index);                       // (B, d)
    return at::matmul(last, sharded_->extra(kValueHead).t()).to(at::kFloat);      // (B, d)
  });
}

autoencoder::Reconstructor ShardedReconstructor::gather() {
  at::Tensor head;
  sharded_->for_each_full_parameter([&](const std::string& name, const at::Tensor& tensor) {
    if (name == kValueHead) head = tensor.clone();
  });
  auto trunk = sharded_->gather_model();
  return autoencoder::Reconstructor(std::move(trunk), head, critic_template_);
}

void ShardedReconstructor::save_checkpoint(const autoencoder::NlaMeta& meta, const std::string& directory,
                                           const std::string& tokenizer_dir) {
  auto ar = gather();  // collective
  run_on_root(sharded_->comm().mpi_comm(), [&] { autoencoder::save_ar(ar, meta, directory, tokenizer_dir); });
}

// ---- AV ----------------------------------------------------------------------------------

AvBatch make_av_batch(const autoencoder::AvPrompt& prompt, const at::Tensor& activations,
                      const std::vector<std::vector<int64_t>>& answers, double injection_scale, c10::Device device,
                      c10::ScalarType dtype) {
  const int64_t b = static_cast<int64_t>(answers.size());
  NLA_CHECK(b > 0 && activations.dim() == 2 && activations.size(0) == b, "make_av_batch: (B, d) activations for B answers");
  int64_t longest = 0;
  for (const auto& answer : answers) {
    NLA_CHECK(!answer.empty(), "make_av_batch: empty answer");
    longest = std::max(longest, static_cast<int64_t>(answer.size()));
  }
  const int64_t p = static_cast<int64_t>(prompt.ids.size());
  AvBatch batch;
  batch.answer_start = p;
  batch.input_ids = at::full({b, p + longest}, autoencoder::kPadTokenId, at::kLong);  // (B, P + A)
  batch.attention_mask = at::zeros({b, p + longest}, at::kLong);     // (B, P + A)
  batch.answer_mask = at::zeros({b, longest}, at::kBool);            // (B, A)
  auto ids = batch.input_ids.accessor<int64_t, 2>();
  auto mask = batch.attention_mask.accessor<int64_t, 2>();
  auto answer_mask = batch.answer_mask.accessor<bool, 2>();
  for (int64_t r = 0; r < b; ++r) {
    for (int64_t t = 0; t < p; ++t) {
      ids[r][t] = prompt.ids[static_cast<size_t>(t)];
      mask[r][t] = 1;
    }
    const auto& answer = answers[static_cast<size_t>(r)];
    for (size_t a = 0; a < answer.size(); ++a) {
      ids[r][p + static_cast<int64_t>(a)] = answer[a];
      mask[r][p + static_cast<int64_t>(a)] = 1;
      answer_mask[r][static_cast<int64_t>(a)] = true;
    }
  }
  batch.answer_ids = batch.input_ids.slice(1, p, p + longest).clone().to(device);  // (B, A)
  batch.input_ids = batch.input_ids.to(device);
  batch.attention_mask = batch.attention_mask.to(device);
  batch.answer_mask = batch.answer_mask.to(device);
  auto long_options = at::TensorOptions().dtype(at::kLong).device(device);
  batch.injection.batch_index = at::arange(b, long_options);                        // (B)
  batch.injection.position = at::full({b}, prompt.marker_position, long_options);    // (B)
  batch.injection.vectors = autoencoder::injection_vectors(activations, injection_scale).to(device, dtype);  // (B, d)
  return batch;
}

namespace {

model::ForwardInput av_input(const AvBatch& batch) {
  model::ForwardInput input;
  input.input_ids = batch.input_ids;
  input.attention_mask = batch.attention_mask;
  input.injection = batch.injection;
  return input;
}

// Positions P-1 .. P+A-2, those that predict the answer tokens, with the answer as targets:
// the model returns log p(answer) there (no (B, A, V) logits; the vocabulary dominates the cost).
model::ForwardOptions answer_window(const AvBatch& batch) {
  const int64_t b = batch.answer_ids.size(0), a = batch.answer_ids.size(1);
  model::ForwardOptions options;
  options.logits_index = (at::arange(a, batch.answer_ids.options()) + (batch.answer_start - 1)).expand({b, a});  // (B, A)
  options.target_ids = batch.answer_ids;  // (B, A)
  options.logit_temperature = batch.temperature;
  return options;
}

// log p(answer) (B, A), 0 where masked.
at::Tensor answer_logprobs(const model::ForwardOutput& out, const AvBatch& batch) {
  return out.token_logprobs * batch.answer_mask.to(at::kFloat);  // (B, A)
}

}  // namespace

ShardedVerbalizer::ShardedVerbalizer(model::Qwen2Model av, dist::Communicator comm, dist::FsdpOptions options) {
  NLA_CHECK_INPUT(av.has_head(), "the AV needs the full model with its LM head");
  sharded_ = std::make_unique<dist::ShardedModel>(std::move(av), std::move(comm), summed(options));
}

double ShardedVerbalizer::accumulate_gradients(const AvBatch& batch, const LogprobLoss& loss_fn) {
  auto loss = sharded_->forward_backward(av_input(batch), answer_window(batch), [&](const model::ForwardOutput& out) {
    return loss_fn(answer_logprobs(out, batch));
  });
  return loss.item<double>();
}

at::Tensor ShardedVerbalizer::accumulate_sft_gradients(const AvBatch& batch, double loss_scale, bool sequence_mean) {
  at::Tensor per_row;
  accumulate_gradients(batch, [&](const at::Tensor& logprobs) {
    auto tokens = batch.answer_mask.sum(1).to(logprobs.scalar_type());                          // (B)
    auto nll = -logprobs.sum(1);                                                                   // (B)
    if (sequence_mean) nll = nll / at::clamp_min(tokens, 1.0);
    per_row = at::stack({nll.detach().to(at::kDouble), tokens.detach().to(at::kDouble)}, 1);  // (B, 2)
    return nll.sum() * loss_scale;
  });
  return per_row.to(at::kCPU);
}

at::Tensor ShardedVerbalizer::token_logprobs(const AvBatch& batch) {
  return sharded_->forward_then(av_input(batch), answer_window(batch),
                                [&](const model::ForwardOutput& out) { return answer_logprobs(out, batch); });
}

model::Qwen2Model ShardedVerbalizer::gather() {
  auto model = sharded_->gather_model();  // fp32
  if (sharded_->compute_dtype() == at::kFloat) return model;
  auto slots = model::qwen2_parameter_slots(model.weights(), model.config(), model.num_loaded_layers(), model.has_head());
  for (auto& slot : slots)
    if (slot.tensor->defined()) *slot.tensor = slot.tensor->to(sharded_->compute_dtype());
  return model;
}

void ShardedVerbalizer::save_checkpoint(const autoencoder::NlaMeta& meta, const std::string& directory,
                                        const std::string& tokenizer_dir) {
  auto av = sharded_->gather_model();  // collective; fp32
  run_on_root(sharded_->comm().mpi_comm(), [&] { autoencoder::save_av(av, meta, directory, tokenizer_dir); });
}

}  // namespace nla::autoencoder
