// Helpers of the model tests (see model_test_util.hpp).
#include "model_test_util.hpp"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "nla/core/atomic_file.hpp"

namespace nla::test {

model::Qwen2Config small_config(int64_t layers, int64_t heads, int64_t kv_heads, int64_t head_dim,
                                int64_t intermediate, int64_t vocab, bool tied) {
  model::Qwen2Config config;
  config.hidden_size = heads * head_dim;
  config.intermediate_size = intermediate;
  config.num_hidden_layers = layers;
  config.num_attention_heads = heads;
  config.num_key_value_heads = kv_heads;
  config.vocab_size = vocab;
  config.tie_word_embeddings = tied;
  config.rms_norm_eps = 1e-6;
  config.rope_theta = 10000.0;
  config.max_position_embeddings = 512;
  return config;
}

model::Qwen2Model spread_random_model(const model::Qwen2Config& config, uint64_t seed) {
  model::Qwen2Model model = model::Qwen2Model::random_init(config, seed);
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed ^ 0x5eedull);
  for (auto& [name, tensor] : model.named_parameters()) {
    bool is_norm = name.find("norm") != std::string::npos;
    bool is_bias = name.find(".bias") != std::string::npos;
    if (is_norm)
      tensor.normal_(1.0, 0.1, generator);
    else if (is_bias)
      tensor.normal_(0.0, 0.1, generator);
    else if (name == "model.embed_tokens.weight")
      tensor.normal_(0.0, 1.0, generator);
    else
      tensor.normal_(0.0, 1.0 / std::sqrt(static_cast<double>(tensor.size(1))), generator);
  }
  return model;
}

void write_test_checkpoint(model::Qwen2Model& model, const std::string& directory, c10::ScalarType dtype,
                           uint64_t max_shard_bytes) {
  model::Qwen2Config config = model.config();
  config.torch_dtype = dtype == at::kBFloat16 ? "bfloat16" : dtype == at::kHalf ? "float16" : "float32";
  write_file_atomic(directory + "/config.json", config.to_json_text());
  model::save_weights(model, directory, dtype, max_shard_bytes);
}

ErrorStats compare(const at::Tensor& value, const at::Tensor& reference) {
  at::Tensor a = value.to(at::kDouble).contiguous(), r = reference.to(at::kDouble).contiguous();
  at::Tensor diff = (a - r).abs().flatten();
  ErrorStats stats;
  if (diff.numel() == 0) return stats;
  int64_t at_index = diff.argmax().item<int64_t>();
  stats.max_abs = diff[at_index].item<double>();
  double scale = r.abs().max().item<double>();
  stats.max_rel = stats.max_abs / std::max(scale, 1e-300);
  // Index -> coordinates.
  std::string where = "[";
  int64_t rest = at_index;
  std::vector<int64_t> coords(static_cast<size_t>(r.dim()));
  for (int64_t d = r.dim() - 1; d >= 0; --d) {
    coords[static_cast<size_t>(d)] = rest % r.size(d);
    rest /= r.size(d);
  }
  for (size_t d = 0; d < coords.size(); ++d) where += (d ? ", " : "") + std::to_string(coords[d]);
  stats.where = where + "] value " + std::to_string(a.flatten()[at_index].item<double>()) + " reference " +
                std::to_string(r.flatten()[at_index].item<double>());
  return stats;
}

}  // namespace nla::test
