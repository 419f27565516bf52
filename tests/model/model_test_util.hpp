// Shared helpers of the model tests: seeded random models whose activations are far
// from trivial (HF's 0.02 init makes attention nearly uniform and biases zero, which
// would hide bugs), checkpoint writing, error statistics.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

#include "nla/model/qwen2.hpp"

namespace nla::test {

// A small config: `vocab` tokens, hidden = heads * head_dim.
model::Qwen2Config small_config(int64_t layers, int64_t heads, int64_t kv_heads, int64_t head_dim,
                                int64_t intermediate, int64_t vocab, bool tied);

// Weights with unit-scale activations: embeddings N(0, 1), matrices N(0, 1/fan_in),
// biases N(0, 0.1), norms 1 + N(0, 0.1).
model::Qwen2Model spread_random_model(const model::Qwen2Config& config, uint64_t seed);

// config.json + model.safetensors (weights in `dtype`).
void write_test_checkpoint(model::Qwen2Model& model, const std::string& directory,
                           c10::ScalarType dtype = c10::ScalarType::Float, uint64_t max_shard_bytes = 1ull << 40);

// max |a - b| / max |ref|, with the place of the largest difference, for messages.
struct ErrorStats {
  double max_abs = 0;
  double max_rel = 0;  // max_abs / max |ref|
  std::string where;
};
ErrorStats compare(const at::Tensor& value, const at::Tensor& reference);

}  // namespace nla::test
