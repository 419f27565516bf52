// The Qwen2 decoder (Qwen2ForCausalLM) in ATen, with the hooks the NLA needs.
//
// A plain model: parameters are tensors in Qwen2Weights, the forward is one function, and
// there is no parallelism code here (sharding is applied from outside, as torchtitan
// does). fp32 on CPU, bf16 on GPU. Autograd works through forward() when parameters
// require grad.
//
// Hooks (ForwardOptions / ForwardInput):
//   - capture_layers: the residual stream after block l (layer l = output of block l, Hugging
//     Face hidden_states[l + 1]; for the last block HF applies the final norm to
//     hidden_states[n], we return the raw block output).
//   - stop_after_layer L: blocks after L are not run; with LoadOptions::num_layers = L + 1
//     they are not even loaded (the AR trunk).
//   - injection: input embeddings at (batch, position) replaced by given vectors.
//   - compute_logits = false: hidden states instead of logits.
//   - steering: scale * vector added to the residual after block l (before that layer is
//     captured), at every position or at given positions (nla steer-audit).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "nla/model/qwen2_config.hpp"

namespace nla::io {
enum class DType;  // nla/io/safetensors.hpp
}

namespace nla::model {

// One decoder block. Shapes with C = hidden_size, KV = num_key_value_heads * head_dim,
// I = intermediate_size.
struct Qwen2Block {
  at::Tensor input_layernorm;           // (C)
  at::Tensor q_proj_weight, q_proj_bias;  // (C, C), (C)
  at::Tensor k_proj_weight, k_proj_bias;  // (KV, C), (KV)
  at::Tensor v_proj_weight, v_proj_bias;  // (KV, C), (KV)
  at::Tensor o_proj_weight;             // (C, C)
  at::Tensor post_attention_layernorm;  // (C)
  at::Tensor gate_proj_weight;          // (I, C)
  at::Tensor up_proj_weight;            // (I, C)
  at::Tensor down_proj_weight;          // (C, I)
};

struct Qwen2Weights {
  at::Tensor embed_tokens;  // (V, C)
  std::vector<Qwen2Block> layers;
  at::Tensor norm;     // (C); undefined without the head
  at::Tensor lm_head;  // (V, C); undefined when tied (embed_tokens is used) or without the head
};

// The one map between Hugging Face tensor names and the model's parameters (as
// torchtitan's state_dict_adapter): every loader, writer and initialiser goes through it.
struct ParameterSlot {
  std::string hf_name;         // "model.layers.3.self_attn.q_proj.weight"
  std::vector<int64_t> shape;  // as config.json implies
  enum class Init { normal, zeros, ones } init = Init::normal;  // HF's _init_weights
  at::Tensor* tensor = nullptr;
};
std::vector<ParameterSlot> qwen2_parameter_slots(Qwen2Weights& weights, const Qwen2Config& config, int64_t num_layers,
                                                 bool with_head);

struct LoadOptions {
  int64_t num_layers = -1;  // blocks 0..num_layers-1 (-1: all); later blocks are not read
  bool with_head = true;    // final norm and LM head (false for the AR trunk)
  c10::ScalarType dtype = c10::ScalarType::Float;
  c10::Device device = c10::Device(c10::DeviceType::CPU);
};

// Replace the input embedding of sequence batch_index[i] at position[i] by vectors[i].
struct Injection {
  at::Tensor batch_index;  // (N) int64
  at::Tensor position;     // (N) int64, index in the T of this call
  at::Tensor vectors;      // (N, C)
  bool defined() const { return vectors.defined(); }
};

struct ForwardInput {
  at::Tensor input_ids;       // (B, T) int64; or
  at::Tensor inputs_embeds;   // (B, T, C)
  at::Tensor attention_mask;  // (B, S) 1 = token, 0 = padding, S = cached + T; undefined: all tokens
  at::Tensor position_ids;    // (B, T) int64; undefined: cumsum(mask) - 1 (pads at 0)
  at::Tensor attention_bias;  // (B, 1, T, S) float, 0 = may attend, float's lowest = may not: instead of
                              // attention_mask when the caller keeps it (generation's decode step);
                              // position_ids must come with it
  Injection injection;
};

// Activation steering: scale * vector added to the residual stream after block `layer`, at
// every token or only at the listed positions (position ids, so the same positions are
// steered in one full forward and in KV-cache steps). What is added is the same in every
// caller (forward, generation, the FSDP per-block forward): apply_steering.
struct Steering {
  int64_t layer = 0;
  at::Tensor vector;               // (C)
  double scale = 1.0;              // 0 adds nothing (the forward is the unsteered one, bit for bit)
  std::vector<int64_t> positions;  // position ids to steer; empty: every position
};

// x (B, T, C), the residual after block `layer`, with every steering of that layer added;
// position_ids (B, T) say which positions these are. x itself when none applies.
at::Tensor apply_steering(const at::Tensor& x, const std::vector<Steering>& steering, int64_t layer,
                          const at::Tensor& position_ids);

// The position ids a forward uses when none are given: cumsum(mask) - 1 (padding at 0) over
// the T positions after `past` cached ones, or past..past+T-1 without a mask. (B, T) int64.
at::Tensor default_position_ids(const at::Tensor& attention_mask, int64_t past, int64_t b, int64_t t,
                                c10::Device device);

struct ForwardOptions {
  std::vector<Steering> steering;       // additions after blocks (see Steering)
  std::vector<int64_t> capture_layers;  // residual after these blocks, (B, T, C) each
  int64_t stop_after_layer = -1;        // run blocks 0..L only (no logits then)
  bool compute_logits = true;
  at::Tensor logits_index;              // (B) int64: logits only at these positions -> (B, V);
                                        // (B, K): K positions per row -> (B, K, V)
  at::Tensor target_ids;                // shaped as logits_index: log p(target) there -> token_logprobs
                                        // instead of logits (no (B, K, V) kept for autograd)
  double logit_temperature = 1.0;       // logits / T (and log-probs of softmax(logits / T)): a
                                        // sampler's tempered distribution (GRPO's rollouts)
  bool fused_attention = true;          // LibTorch 2.x: scaled_dot_product_attention
  bool greedy_tokens = false;           // with a (B) logits_index: the argmax token of each row
                                        // (ForwardOutput::next_tokens) instead of its logits
};

// The additive attention bias (0 or float's lowest) in `dtype`, finite there: what the fused
// kernel of LibTorch 2.x gets as its mask in bf16/fp16.
at::Tensor attention_bias_as(const at::Tensor& bias, c10::ScalarType dtype);

struct ForwardOutput {
  at::Tensor logits;                      // (B, T, V), or (B, V) / (B, K, V) with logits_index; float32
  at::Tensor token_logprobs;              // with target_ids: log p(target), shaped as logits_index; float32
  at::Tensor next_tokens;                 // with greedy_tokens: (B) int64 on the model's device
  at::Tensor hidden;                      // (B, T, C) residual after the last block run
  std::map<int64_t, at::Tensor> captured; // layer -> (B, T, C)
};

// Keys and values of every loaded block, preallocated to `capacity` positions, and the rotary
// cos/sin of every position below it (a position id never exceeds its column), so a decode
// step looks them up instead of computing them.
struct KVCache {
  std::vector<at::Tensor> keys, values;  // per block (B, KV heads, capacity, head_dim)
  at::Tensor rotary_cos, rotary_sin;     // (capacity, head_dim) in the model's dtype
  // A decode step with static shapes (one a CUDA graph can replay): when defined, (1) int64 on
  // the cache's device, the column this step's keys go to; attention then spans all `capacity`
  // columns (the bias masks the unused ones) and `length` is the caller's to advance.
  at::Tensor write_column;
  int64_t length = 0;                    // positions filled
  int64_t capacity = 0;
};

class Qwen2Model {
 public:
  Qwen2Model() = default;
  // Loads a checkpoint directory (config.json + safetensors).
  static Qwen2Model load(const std::string& directory, const LoadOptions& options = {});
  // Hugging Face's initialisation (normal(0, 0.02), zero biases, unit norms), seeded per
  // tensor name so the result does not depend on the order or the sharding.
  static Qwen2Model random_init(const Qwen2Config& config, uint64_t seed, const LoadOptions& options = {});
  static Qwen2Model from_weights(const Qwen2Config& config, Qwen2Weights weights);

  const Qwen2Config& config() const { return config_; }
  int64_t num_loaded_layers() const { return static_cast<int64_t>(weights_.layers.size()); }
  bool has_head() const { return weights_.norm.defined(); }
  Qwen2Weights& weights() { return weights_; }
  const Qwen2Weights& weights() const { return weights_; }
  c10::ScalarType dtype() const;
  c10::Device device() const;

  // (HF name, tensor) of every loaded parameter.
  std::vector<std::pair<std::string, at::Tensor>> named_parameters();
  std::vector<at::Tensor> parameters();

  at::Tensor embed(const at::Tensor& input_ids) const;  // (B, T) -> (B, T, C)
  ForwardOutput forward(const ForwardInput& input, const ForwardOptions& options = {}, KVCache* cache = nullptr) const;
  KVCache make_cache(int64_t batch, int64_t capacity) const;

 private:
  Qwen2Config config_;
  Qwen2Weights weights_;
};

// Writes a checkpoint directory's weights (model.safetensors, sharded above
// max_shard_bytes) in `dtype` through the parameter map.
// A NaN or Inf weight makes every output NaN (generate prints "!!!!", extract writes NaN
// activations): checkpoint loads refuse it, naming the file, the tensor and the first bad
// element (InputError).
void check_finite_weights(const at::Tensor& tensor, const std::string& path, const std::string& name);

// The float dtype of a safetensors tensor (F32, BF16, F16, F64); InputError "<where>: dtype X
// (expected F32, BF16, F16 or F64)" for any other. Every tensor nla reads goes through it.
c10::ScalarType float_scalar_type(io::DType dtype, const std::string& where);

void save_weights(Qwen2Model& model, const std::string& directory, c10::ScalarType dtype, uint64_t max_shard_bytes);

// "float32" | "bfloat16" | "float16" -> dtype; InputError naming `where` otherwise.
c10::ScalarType dtype_from_config_name(const std::string& name, const std::string& where);

// Writes a seeded random-init checkpoint without building the model in memory (one
// shard at a time): the path of `nla init-model`. Same tensors as random_init. Weights are
// N(0, 0.02) as in HF's init; the token embedding (also the tied LM head) is
// N(0, embedding_std).
void write_random_checkpoint(const Qwen2Config& config, uint64_t seed, const std::string& directory,
                             c10::ScalarType dtype, uint64_t max_shard_bytes, double embedding_std = 0.02);

}  // namespace nla::model
