// The Activation Reconstructor (AR): the base model truncated to blocks 0..L (final norm
// and LM head dropped) plus a bias-free linear head d -> d initialised to the identity;
// h_hat is the head applied to the residual after block L at each sequence's last token.
// A plain module: parameters() lists every trainable tensor so a trainer (or the FSDP
// layer, from outside) can own the update.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <utility>
#include <vector>

#include "nla/model/qwen2.hpp"
#include "nla/tokenizer/tokenizer.hpp"

namespace nla::autoencoder {

// A right-padded batch of AR inputs.
struct ArBatch {
  at::Tensor input_ids;       // (B, T) int64, padded with pad_id
  at::Tensor attention_mask;  // (B, T) int64, 1 = token
  at::Tensor last_index;      // (B) int64, position of each sequence's last real token
};

// Tokenises descriptions into AR inputs (critic template) and right-pads them on `device`;
// max_tokens > 0 keeps each input's last max_tokens tokens, so the suffix that h_hat is
// read at survives.
ArBatch make_ar_batch(const tokenizer::Tokenizer& tokenizer, const std::vector<std::string>& descriptions,
                      int64_t max_tokens, const std::string& critic_template, c10::Device device);

class Reconstructor {
 public:
  Reconstructor() = default;
  // From a base checkpoint: blocks 0..layer, identity value head.
  static Reconstructor from_base(const std::string& model_dir, int64_t layer, const model::LoadOptions& options = {});
  // From parts (an AR checkpoint loader, tests). value_head: (d, d), y = x W^T.
  Reconstructor(model::Qwen2Model trunk, at::Tensor value_head, std::string critic_template);

  int64_t layer() const { return trunk_.num_loaded_layers() - 1; }
  int64_t d_model() const { return trunk_.config().hidden_size; }
  model::Qwen2Model& trunk() { return trunk_; }
  const model::Qwen2Model& trunk() const { return trunk_; }
  const at::Tensor& value_head() const { return value_head_; }
  const std::string& critic_template() const { return critic_template_; }

  // Tokenises descriptions into the AR input and right-pads them (max_tokens > 0 keeps
  // each input's last max_tokens tokens, so the suffix that h_hat is read at survives).
  ArBatch make_batch(const tokenizer::Tokenizer& tokenizer, const std::vector<std::string>& descriptions,
                     int64_t max_tokens = 0) const;
  // h_hat: (B, d) fp32.
  at::Tensor forward(const ArBatch& batch) const;

  // Trunk parameters (HF names) then "value_head.weight".
  std::vector<std::pair<std::string, at::Tensor>> named_parameters();
  std::vector<at::Tensor> parameters();
  void set_requires_grad(bool requires_grad);

 private:
  model::Qwen2Model trunk_;
  at::Tensor value_head_;  // (d, d)
  std::string critic_template_;
};

}  // namespace nla::autoencoder
