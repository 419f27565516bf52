// The AR: truncated trunk + identity-initialised value head, read at the last token.
#include "nla/autoencoder/reconstructor.hpp"

#include <ATen/ATen.h>

#include <algorithm>

#include "nla/core/error.hpp"
#include "nla/autoencoder/prompts.hpp"

namespace nla::autoencoder {

Reconstructor Reconstructor::from_base(const std::string& model_dir, int64_t layer,
                                       const model::LoadOptions& options) {
  NLA_CHECK_INPUT(layer >= 0, "option 'layer': expected >= 0, got ", layer);
  model::LoadOptions trunk_options = options;
  trunk_options.num_layers = layer + 1;
  trunk_options.with_head = false;
  auto trunk = model::Qwen2Model::load(model_dir, trunk_options);
  int64_t d = trunk.config().hidden_size;
  auto head = at::eye(d, at::TensorOptions().dtype(trunk.dtype()).device(trunk.device()));  // (d, d)
  return Reconstructor(std::move(trunk), head, kCriticTemplate);
}

Reconstructor::Reconstructor(model::Qwen2Model trunk, at::Tensor value_head, std::string critic_template)
    : trunk_(std::move(trunk)), value_head_(std::move(value_head)), critic_template_(std::move(critic_template)) {
  int64_t d = trunk_.config().hidden_size;
  NLA_CHECK_INPUT(value_head_.dim() == 2 && value_head_.size(0) == d && value_head_.size(1) == d,
                  "value_head.weight: expected [", d, ", ", d, "], got ", value_head_.sizes());
  NLA_CHECK_INPUT(!trunk_.has_head(), "AR trunk: expected no final norm or LM head");
}

ArBatch make_ar_batch(const tokenizer::Tokenizer& tokenizer, const std::vector<std::string>& descriptions,
                      int64_t max_tokens, const std::string& critic_template, c10::Device device) {
  std::vector<std::vector<tokenizer::TokenId>> sequences;
  int64_t longest = 1;
  for (const auto& description : descriptions) {
    auto ids = ar_input_ids(tokenizer, description, critic_template);
    if (max_tokens > 0 && static_cast<int64_t>(ids.size()) > max_tokens) ids.erase(ids.begin(), ids.end() - max_tokens);
    longest = std::max(longest, static_cast<int64_t>(ids.size()));
    sequences.push_back(std::move(ids));
  }
  int64_t B = static_cast<int64_t>(sequences.size());
  ArBatch batch;
  batch.input_ids = at::full({B, longest}, kPadTokenId, at::kLong);   // (B, T)
  batch.attention_mask = at::zeros({B, longest}, at::kLong);     // (B, T)
  batch.last_index = at::zeros({B}, at::kLong);                  // (B)
  auto ids = batch.input_ids.accessor<int64_t, 2>();
  auto mask = batch.attention_mask.accessor<int64_t, 2>();
  auto last = batch.last_index.accessor<int64_t, 1>();
  for (int64_t b = 0; b < B; ++b) {
    const auto& s = sequences[b];
    for (size_t t = 0; t < s.size(); ++t) {
      ids[b][t] = s[t];
      mask[b][t] = 1;
    }
    last[b] = static_cast<int64_t>(s.size()) - 1;
  }
  batch.input_ids = batch.input_ids.to(device);
  batch.attention_mask = batch.attention_mask.to(device);
  batch.last_index = batch.last_index.to(device);
  return batch;
}

ArBatch Reconstructor::make_batch(const tokenizer::Tokenizer& tokenizer, const std::vector<std::string>& descriptions,
                                  int64_t max_tokens) const {
  return make_ar_batch(tokenizer, descriptions, max_tokens, critic_template_, trunk_.device());
}

at::Tensor Reconstructor::forward(const ArBatch& batch) const {
  model::ForwardInput input;
  input.input_ids = batch.input_ids;
  input.attention_mask = batch.attention_mask;
  model::ForwardOptions options;
  options.stop_after_layer = layer();
  options.compute_logits = false;
  auto hidden = trunk_.forward(input, options).hidden;  // (B, T, d), raw residual after block L
  int64_t d = hidden.size(2);
  auto index = batch.last_index.view({-1, 1, 1}).expand({-1, 1, d});  // (B, 1, d)
  auto last = hidden.gather(1, index).squeeze(1);                       // (B, d)
  return at::matmul(last, value_head_.t()).to(at::kFloat);              // (B, d)
}

std::vector<std::pair<std::string, at::Tensor>> Reconstructor::named_parameters() {
  auto named = trunk_.named_parameters();
  named.emplace_back("value_head.weight", value_head_);
  return named;
}

std::vector<at::Tensor> Reconstructor::parameters() {
  std::vector<at::Tensor> out;
  for (auto& [name, tensor] : named_parameters()) out.push_back(tensor);
  return out;
}

void Reconstructor::set_requires_grad(bool requires_grad) {
  for (auto& tensor : parameters()) tensor.requires_grad_(requires_grad);
}

}  // namespace nla::autoencoder
