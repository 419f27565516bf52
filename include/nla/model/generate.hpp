// Batched generation with a KV cache: prompts of different lengths padded left or right
// (attention mask and position ids follow), greedy or temperature/top-p sampling with one
// seed per sequence (a sequence's samples do not depend on its batch), stop tokens, a cap
// on new tokens; prompts from token ids or from input embeddings, with injections.
// Continuous batching: with max_batch below the number of prompts, that many rows decode at
// once and a row that finishes takes the next waiting prompt, so a long list of prompts
// (a GRPO rollout of activations x samples) keeps the batch full. A sequence's tokens do not
// depend on max_batch or on which row it ran in.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "nla/model/qwen2.hpp"

namespace nla::model {

// NLA_DEVICE_SAMPLING=1: sample on the logits' device (see docs/building.md, Runtime settings).
bool device_sampling_from_environment();
// NLA_CUDA_GRAPHS=1: a CUDA model's decode step is captured as a CUDA graph and replayed.
bool cuda_graphs_from_environment();

struct GenerationOptions {
  int64_t max_new_tokens = 32;
  int64_t max_batch = 0;  // rows decoded at once; 0: every prompt in one batch
  // Greedy without logits: the host reads the new ids back every check_every steps (one
  // synchronisation; the steps between feed each other's ids on the device), so a sequence
  // may run up to check_every - 1 steps past its stop, which are dropped. 0: 8 on a GPU, 1 on the CPU.
  int64_t check_every = 0;
  double temperature = 0.0;  // 0: greedy
  double top_p = 1.0;
  std::vector<uint64_t> seeds;  // one per sequence; empty: seed + index
  uint64_t seed = 0;
  std::vector<int64_t> stop_token_ids;
  bool left_padding = true;
  int64_t pad_token_id = 0;  // fed for padding (masked out)
  bool return_logits = false; // keep the logits before each new token (tests)
  bool device_sampling = device_sampling_from_environment();  // see sample_tokens
  // The decode step with static shapes (attention over the whole cache, the new keys written
  // at a device-side column), captured as a CUDA graph on a CUDA model and replayed; rows then
  // stay in the batch until it ends. Off by default until a GPU run has checked it; without
  // steering only. static_decode_step alone runs those shapes eagerly, on any device (tests).
  bool cuda_graphs = cuda_graphs_from_environment();
  bool static_decode_step = false;
  std::vector<Steering> steering;  // applied in the prefill and every step (positions are position ids)
};

// One prompt: token ids, or embeddings (T, C); injections replace the embedding at a
// position of this prompt by a vector (C).
struct GenerationPrompt {
  std::vector<int64_t> ids;
  at::Tensor embeds;  // (T, C) instead of ids
  std::vector<std::pair<int64_t, at::Tensor>> injections;
};

struct GenerationResult {
  std::vector<std::vector<int64_t>> tokens;  // new tokens per sequence (a stop token included)
  std::vector<std::string> finish_reasons;   // "stop" | "length"
  std::vector<at::Tensor> step_logits;       // with return_logits: [k] (N, V), row i's logits before its
                                             // k-th new token (zeros once sequence i has ended)
};

GenerationResult generate(const Qwen2Model& model, const std::vector<GenerationPrompt>& prompts,
                          const GenerationOptions& options);

// Picks the next token of each row of logits (B, V): argmax when temperature is 0, else a
// sample of softmax(logits / temperature) restricted to the smallest set of tokens whose
// probability reaches top_p, row i drawn with generators[i] (so a row's sample does not
// depend on the other rows). Logits off the CPU are sampled on their device when
// `on_device`, else copied to the host first (greedy stays on the device either way).
std::vector<int64_t> sample_tokens(const at::Tensor& logits, double temperature, double top_p,
                                   const std::vector<at::Generator*>& generators, bool on_device = false);

}  // namespace nla::model
