// FSDP-style sharding of a Qwen2 model over a group of ranks, applied from outside (as
// torchtitan's parallelize does): the model code knows nothing of it.
//
// Units. The parameters are grouped into flat units: one for the embedding, one per
// transformer block, one for the final norm + LM head (a tied head has no tensor of its
// own: it is the embedding). Each unit is one flat buffer, padded with zeros to a multiple
// of the group size N; rank r owns elements [r * S, (r + 1) * S), S = padded / N.
//
// Per rank, for a unit of P elements (fp32 compute):
//   master  (S) fp32   the parameters (the optimizer updates them)
//   grad    (S) fp32   reduce-scattered gradients, accumulated over micro-batches
//   (+ ShardedAdamW's two moments, (S) fp32 each)      -> 16 * P / N bytes in all
//   compute (S) in the compute dtype when it is not fp32 (bf16 on GPU: + 2 * P / N)
// plus, while a unit is in use, its gathered flat buffer (padded P, compute dtype) and
// that buffer's gradient.
//
// Two modes (FsdpOptions::per_block):
//   - gather-all: every unit gathered, the model's forward/backward run as written, the
//     units' gradients reduce-scattered, the buffers released. Simple; peak = whole model.
//   - per-block with recomputation: forward block by block under no-grad, each unit
//     gathered just before its block and released after, keeping only the block-boundary
//     activations (B, T, C); backward in reverse: regather the unit, recompute its block
//     with grad from the saved input, backprop the incoming activation gradient,
//     reduce-scatter the unit's gradient, release. Peak = one gathered unit (two for a
//     tied head, whose embedding stays gathered from the head's backward to the
//     embedding's) + the boundary activations. The per-block forward composes the model's
//     own forward() over one-block views of the weights, so the math is the model's.
//
// Extra parameters. A model may carry tensors outside the Qwen2 parameter map (the AR's
// value head): they form one more unit, "extra", last, gathered while the loss function
// (or a forward's post-processing) runs and sharded, reduced and updated like the rest.
//
// Every rank must call the collective members in the same order with the same options.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "nla/dist/communicator.hpp"
#include "nla/model/qwen2.hpp"

namespace nla::dist {

struct FsdpOptions {
  bool per_block = false;  // gather one unit at a time, recompute blocks in backward
  // Divide the reduce-scattered gradient sums by N: with each rank's loss a mean over its
  // own micro-batch, the gradient is then that of the mean over all ranks' (equal) batches.
  bool average_gradients = true;
  // The dtype of the gathered weights and of the forward/backward (bf16 on GPU); the
  // master shards stay fp32. Undefined: the model's own dtype.
  c10::ScalarType compute_dtype = c10::ScalarType::Undefined;
};

// One flat unit of parameters and this rank's shard of it.
struct FlatUnit {
  struct Entry {
    std::string hf_name;           // "model.layers.3.self_attn.q_proj.weight"
    std::vector<int64_t> shape;
    int64_t offset = 0;            // in the flat unit
    int64_t numel = 0;
    at::Tensor* slot = nullptr;    // the model's tensor this entry feeds
  };
  std::string name;                // "embed", "layers.3", "head"
  std::vector<Entry> entries;
  int64_t numel = 0;               // sum of the entries
  int64_t padded_numel = 0;        // numel rounded up to a multiple of N
  int64_t shard_numel = 0;         // padded_numel / N
  int64_t shard_offset = 0;        // rank * shard_numel

  at::Tensor master;    // (S) fp32
  at::Tensor compute;   // (S) compute dtype; the same tensor as master when fp32
  at::Tensor grad;      // (S) fp32
  at::Tensor gathered;  // (padded) compute dtype while gathered; undefined otherwise
  bool frozen = false;  // no gradient is computed and the optimizer leaves it as it is
};

// Bytes this rank holds (for `nla bench memory`).
struct ShardMemory {
  int64_t parameters = 0;      // master (+ compute copy when it is not fp32)
  int64_t gradients = 0;       // grad shards
  int64_t largest_unit = 0;    // bytes of the largest gathered unit (compute dtype)
  int64_t total_parameters = 0;  // P, unpadded, over all units
};

// A named tensor outside the Qwen2 parameter map (e.g. "value_head.weight").
struct ExtraParameter {
  std::string name;
  at::Tensor tensor;
};

class ShardedModel {
 public:
  // Takes a model whose full parameters are the same on every rank (same seed or same
  // checkpoint), keeps this rank's shards and frees the full tensors. Collective only in
  // that every rank must construct it; no communication.
  ShardedModel(model::Qwen2Model model, Communicator comm, FsdpOptions options = {},
               std::vector<ExtraParameter> extras = {});
  // The units point into model_'s weights: not copyable, not movable (hold it in place or
  // by pointer).
  ShardedModel(const ShardedModel&) = delete;
  ShardedModel& operator=(const ShardedModel&) = delete;

  const model::Qwen2Config& config() const { return model_.config(); }
  const Communicator& comm() const { return comm_; }
  const FsdpOptions& options() const { return options_; }
  std::vector<FlatUnit>& units() { return units_; }
  const std::vector<FlatUnit>& units() const { return units_; }
  c10::ScalarType compute_dtype() const { return compute_dtype_; }
  c10::Device device() const { return device_; }

  // One micro-batch: forward, loss_fn(output) (a scalar), backward, gradients
  // reduce-scattered and added to the shards' grad. Returns this rank's loss (detached).
  // Per-block mode: capture_layers is not supported (their gradient would be lost).
  using LossFunction = std::function<at::Tensor(const model::ForwardOutput& output)>;
  at::Tensor forward_backward(const model::ForwardInput& input, const model::ForwardOptions& options,
                              const LossFunction& loss_fn);

  // Inference forward under no-grad; per-block mode gathers one unit at a time.
  model::ForwardOutput forward(const model::ForwardInput& input, const model::ForwardOptions& options = {});
  // The same, then post(output) while the extra parameters are gathered; returns its result.
  at::Tensor forward_then(const model::ForwardInput& input, const model::ForwardOptions& options,
                          const LossFunction& post);

  // An extra parameter's full tensor: defined only while gathered, i.e. inside a loss
  // function or a forward_then post-processing. InputError for an unknown name.
  const at::Tensor& extra(const std::string& name) const;

  // Keeps the unit `name` ("embed", "layers.3", "head") as it is from now on: backward
  // computes no gradient for it and ShardedAdamW skips it. InputError for an unknown name.
  void freeze(const std::string& name);

  void zero_grad();
  // Scales the grad shards so their global L2 norm is at most max_norm (torch's
  // clip_grad_norm_: coefficient max_norm / (norm + 1e-6), capped at 1). Returns the
  // norm before clipping. Collective.
  double clip_grad_norm(double max_norm);
  // Global L2 norm of the gradients. Collective.
  double grad_norm();

  // After the optimizer changed `master`: refresh the compute-dtype shards.
  void refresh_compute_shards();

  // Gathers the units one at a time and calls visit(hf_name, full tensor) on every rank,
  // in the model's parameter order (checkpoint writes, weights to rollout/reward groups).
  // Collective.
  void for_each_full_parameter(const std::function<void(const std::string&, const at::Tensor&)>& visit);
  // A plain model holding the full fp32 parameters (every rank). Collective.
  model::Qwen2Model gather_model();

  ShardMemory memory() const;

 private:
  void gather(FlatUnit& unit, bool requires_grad);
  void release(FlatUnit& unit);
  void reduce_scatter_grad(FlatUnit& unit);
  at::Tensor forward_backward_all(const model::ForwardInput& input, const model::ForwardOptions& options,
                                  const LossFunction& loss_fn);
  at::Tensor forward_backward_per_block(const model::ForwardInput& input, const model::ForwardOptions& options,
                                        const LossFunction& loss_fn);
  // The per-block stages: the model's forward over views of the weights.
  at::Tensor embed_stage(const model::ForwardInput& input) const;
  // Block `layer` on x, then the steering additions of that layer (options.steering).
  at::Tensor block_stage(int64_t layer, const at::Tensor& x, const model::ForwardInput& input,
                         const model::ForwardOptions& options) const;
  model::ForwardOutput head_stage(const at::Tensor& x, const model::ForwardInput& input,
                                  const model::ForwardOptions& options) const;
  bool runs_head(const model::ForwardOptions& options) const;
  int64_t blocks_run(const model::ForwardOptions& options) const;
  FlatUnit& embed_unit() { return units_.front(); }
  FlatUnit& block_unit(int64_t layer) { return units_[static_cast<size_t>(1 + layer)]; }
  FlatUnit* head_unit() { return has_head_ ? &units_[static_cast<size_t>(1 + model_.num_loaded_layers())] : nullptr; }
  FlatUnit* extra_unit() { return extras_.empty() ? nullptr : &units_.back(); }

  model::Qwen2Model model_;  // its weight tensors are views of gathered units, or undefined
  Communicator comm_;
  FsdpOptions options_;
  std::vector<FlatUnit> units_;
  c10::ScalarType compute_dtype_;
  c10::Device device_;
  bool has_head_ = false;
  bool tied_head_ = false;
  std::vector<ExtraParameter> extras_;  // their tensors are views of the gathered extra unit
};

}  // namespace nla::dist
