// AdamW on the shards of a ShardedModel: fp32 master weights and moments exist only for
// the elements this rank owns (torch.optim.AdamW's math, element by element: decoupled
// weight decay p *= 1 - lr * wd, bias-corrected moments, eps added after the sqrt).
//
// Saved state (save/load, a directory; collective):
//   optimizer_state.json                      index: format, step, options, the group size
//                                             it was written with, every unit's name,
//                                             element count and parameter entries
//   optimizer-rank<r>-of-<N>.safetensors      rank r's slice of each unit, padding
//                                             excluded: "<unit>.master", "<unit>.exp_avg",
//                                             "<unit>.exp_avg_sq", fp32, (len_r)
// Each rank writes its own file (no gather, no rank-0 bottleneck); the index is written
// last by rank 0, so a directory without it is incomplete. Loading on M ranks (any M)
// reads, for each unit, the parts of the old rank files that overlap this rank's new range
// (files memory-mapped: only those pages are read): resharding is a change of slicing.
// Weight decay applies to every parameter (torch's AdamW with one parameter group).
//
// The update itself (adamw_update) runs as one of three kernels, all torch's math:
//   per_tensor  9 ATen ops per tensor (torch 1.13's single-tensor AdamW, op for op)
//   foreach     the same ops over every tensor at once (at::_foreach_*): on the CPU the
//               same arithmetic as per_tensor, bit for bit; on CUDA multi-tensor kernels
//   fused       one kernel over every tensor (at::_fused_adamw_: LibTorch >= 2.0 on CUDA,
//               >= 2.4 on the CPU): reads p, g, m, v and writes p, m, v once; the same
//               results within fp32 rounding (its own order of operations)
// `automatic` is NLA_ADAMW_KERNEL's choice (per_tensor | foreach | fused), foreach when unset:
// the fused kernel is opt-in until a GPU run has checked it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nla/dist/fsdp.hpp"

namespace nla::dist {

enum class AdamWKernel { automatic, per_tensor, foreach, fused };

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;
  AdamWKernel kernel = AdamWKernel::automatic;
};

// The tensors of one update, index by index: each param with its grad and two moments (the
// same device, dtype and size).
struct AdamWTensors {
  std::vector<at::Tensor> params, grads, exp_avgs, exp_avg_sqs;
};

// Whether this LibTorch has the fused kernel for tensors on `device`.
bool fused_adamw_available(const at::Device& device);
// `kernel` with automatic resolved (NLA_ADAMW_KERNEL, else foreach).
AdamWKernel resolve_adamw_kernel(AdamWKernel kernel, const at::Device& device);
const char* adamw_kernel_name(AdamWKernel kernel);

// One AdamW update in place (step counts from 1; lr as given, options.lr ignored). Throws
// when `kernel` is fused and fused_adamw_available() is false.
void adamw_update(AdamWTensors& tensors, int64_t step, double lr, const AdamWOptions& options);

class ShardedAdamW {
 public:
  ShardedAdamW(ShardedModel& model, AdamWOptions options = {});

  // One update of every shard from its grad with learning rate `lr` (schedulers pass the
  // step's rate; lr < 0 uses options().lr); refreshes the model's compute shards.
  void step(double lr = -1);
  int64_t step_count() const { return step_; }
  const AdamWOptions& options() const { return options_; }
  // Bytes of the two moments on this rank.
  int64_t state_bytes() const;

  // Collective over the model's group. load() accepts a state written by any group size
  // for the same model shapes (InputError naming the file otherwise).
  void save(const std::string& directory) const;
  void load(const std::string& directory);

 private:
  void load_local(const std::string& directory);  // this rank's part of load()

  ShardedModel& model_;
  AdamWOptions options_;
  int64_t step_ = 0;
  std::vector<at::Tensor> exp_avg_;     // per unit (S) fp32
  std::vector<at::Tensor> exp_avg_sq_;  // per unit (S) fp32
};

}  // namespace nla::dist
