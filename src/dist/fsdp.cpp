// FSDP-style sharding of a Qwen2 model: flat units, gather/release, reduce-scattered
// gradients, the gather-all and per-block (recomputing) training steps.
#include "nla/dist/fsdp.hpp"

#include <c10/core/GradMode.h>  // c10::NoGradGuard (LibTorch 2.x has no at:: alias here)
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "nla/core/error.hpp"

namespace nla::dist {

namespace {

// "model.layers.3.mlp.up_proj.weight" -> 3; -1 for names outside the blocks.
int64_t layer_of(const std::string& hf_name) {
  const std::string prefix = "model.layers.";
  if (hf_name.rfind(prefix, 0) != 0) return -1;
  return std::stoll(hf_name.substr(prefix.size()));
}

// Releases every gathered unit when a step leaves early by an exception.
struct ReleaseAll {
  std::function<void()> release;
  ~ReleaseAll() {
    if (release) release();
  }
};

}  // namespace

ShardedModel::ShardedModel(model::Qwen2Model model, Communicator comm, FsdpOptions options,
                           std::vector<ExtraParameter> extras)
    : model_(std::move(model)),
      comm_(std::move(comm)),
      options_(options),
      compute_dtype_(options.compute_dtype != c10::ScalarType::Undefined ? options.compute_dtype : model_.dtype()),
      device_(model_.device()),
      extras_(std::move(extras)) {
  NLA_CHECK(comm_.valid(), "ShardedModel needs a valid Communicator");
  has_head_ = model_.has_head();
  const int64_t n = comm_.size(), num_layers = model_.num_loaded_layers();
  units_.resize(static_cast<size_t>(1 + num_layers + (has_head_ ? 1 : 0) + (extras_.empty() ? 0 : 1)));
  units_.front().name = "embed";
  for (int64_t l = 0; l < num_layers; ++l) block_unit(l).name = "layers." + std::to_string(l);
  if (has_head_) head_unit()->name = "head";
  if (!extras_.empty()) extra_unit()->name = "extra";

  auto slots = model::qwen2_parameter_slots(model_.weights(), model_.config(), num_layers, has_head_);
  for (auto& slot : slots) {
    const int64_t layer = layer_of(slot.hf_name);
    FlatUnit& unit = layer >= 0 ? block_unit(layer) : (slot.hf_name == "model.embed_tokens.weight" ? embed_unit()
                                                                                                     : *head_unit());
    NLA_CHECK(slot.tensor->defined(), "parameter ", slot.hf_name, " is not loaded");
    FlatUnit::Entry entry{slot.hf_name, slot.shape, unit.numel, slot.tensor->numel(), slot.tensor};
    unit.numel += entry.numel;
    unit.entries.push_back(std::move(entry));
  }
  for (auto& extra : extras_) {
    NLA_CHECK(extra.tensor.defined() && extra.tensor.device() == device_, "extra parameter ", extra.name,
              " must be defined on the model's device");
    FlatUnit& unit = *extra_unit();
    std::vector<int64_t> shape(extra.tensor.sizes().begin(), extra.tensor.sizes().end());
    FlatUnit::Entry entry{extra.name, shape, unit.numel, extra.tensor.numel(), &extra.tensor};
    unit.numel += entry.numel;
    unit.entries.push_back(std::move(entry));
  }
  // A tied head has no tensor of its own: its logits read the embedding unit.
  tied_head_ = has_head_ && std::none_of(head_unit()->entries.begin(), head_unit()->entries.end(),
                                         [](const FlatUnit::Entry& e) { return e.hf_name == "lm_head.weight"; });
  const auto fp32 = at::TensorOptions().dtype(at::kFloat).device(device_);
  for (auto& unit : units_) {
    unit.padded_numel = (unit.numel + n - 1) / n * n;
    unit.shard_numel = unit.padded_numel / n;
    unit.shard_offset = comm_.rank() * unit.shard_numel;
    // Only this rank's slice is copied out of each parameter, so no full flat unit is
    // ever built here (the full model is already in memory once; not twice).
    unit.master = at::zeros({unit.shard_numel}, fp32);  // (S)
    const int64_t begin = unit.shard_offset, end = begin + unit.shard_numel;
    for (auto& entry : unit.entries) {
      const int64_t lo = std::max(begin, entry.offset), hi = std::min(end, entry.offset + entry.numel);
      if (lo < hi)
        unit.master.narrow(0, lo - begin, hi - lo)
            .copy_(entry.slot->detach().reshape({-1}).narrow(0, lo - entry.offset, hi - lo));
      *entry.slot = at::Tensor();  // the full tensor is freed with its last reference
    }
    unit.compute = compute_dtype_ == at::kFloat ? unit.master : unit.master.to(compute_dtype_);
    unit.grad = at::zeros({unit.shard_numel}, fp32);  // (S)
  }
}

void ShardedModel::gather(FlatUnit& unit, bool requires_grad) {
  unit.gathered = at::empty({unit.padded_numel}, at::TensorOptions().dtype(compute_dtype_).device(device_));
  comm_.all_gather(unit.compute, unit.gathered);
  // A leaf: the entries' views route their gradients into gathered.grad(), (padded).
  if (requires_grad && !unit.frozen) unit.gathered.requires_grad_(true);
  for (auto& entry : unit.entries) *entry.slot = unit.gathered.narrow(0, entry.offset, entry.numel).view(entry.shape);
}

void ShardedModel::release(FlatUnit& unit) {
  for (auto& entry : unit.entries) *entry.slot = at::Tensor();
  unit.gathered = at::Tensor();
}

void ShardedModel::reduce_scatter_grad(FlatUnit& unit) {
  // Undefined when this loss does not use the unit; the same on every rank, since every
  // rank runs the same graph.
  at::Tensor full = unit.gathered.defined() ? unit.gathered.grad() : at::Tensor();
  if (!full.defined()) return;
  at::Tensor full32 = full.to(at::kFloat);  // (padded) reduced in fp32 also when computing in bf16
  at::Tensor part = at::empty({unit.shard_numel}, full32.options());  // (S)
  comm_.reduce_scatter(full32, part);
  if (options_.average_gradients && comm_.size() > 1) part.div_(static_cast<double>(comm_.size()));
  unit.grad.add_(part);
}

void ShardedModel::freeze(const std::string& name) {
  for (auto& unit : units_)
    if (unit.name == name) {
      unit.frozen = true;
      return;
    }
  NLA_INPUT_ERROR("freeze: the model has no parameter unit '", name, "'");
}

void ShardedModel::zero_grad() {
  for (auto& unit : units_) unit.grad.zero_();
}

double ShardedModel::grad_norm() {
  double local = 0;
  for (auto& unit : units_) {
    const double norm = unit.grad.norm().item<double>();
    local += norm * norm;
  }
  return std::sqrt(comm_.all_reduce_scalar(local));
}

double ShardedModel::clip_grad_norm(double max_norm) {
  const double total = grad_norm();
  const double coefficient = max_norm / (total + 1e-6);
  if (coefficient < 1)
    for (auto& unit : units_) unit.grad.mul_(coefficient);
  return total;
}

void ShardedModel::refresh_compute_shards() {
  if (compute_dtype_ == at::kFloat) return;  // compute is master
  for (auto& unit : units_) unit.compute.copy_(unit.master);
}

int64_t ShardedModel::blocks_run(const model::ForwardOptions& options) const {
  const int64_t n_run = options.stop_after_layer >= 0 ? options.stop_after_layer + 1 : model_.num_loaded_layers();
  NLA_CHECK(n_run <= model_.num_loaded_layers(), "stop_after_layer ", options.stop_after_layer, " but only ",
            model_.num_loaded_layers(), " blocks are loaded");
  return n_run;
}

bool ShardedModel::runs_head(const model::ForwardOptions& options) const {
  return options.compute_logits && options.stop_after_layer < 0 && has_head_ &&
         model_.num_loaded_layers() == config().num_hidden_layers;
}

// ---- the per-block stages: the model's own forward over views of the weights ----------

at::Tensor ShardedModel::embed_stage(const model::ForwardInput& input) const {
  model::Qwen2Config cfg = config();
  cfg.num_hidden_layers = 0;
  model::Qwen2Weights weights;
  weights.embed_tokens = model_.weights().embed_tokens;
  model::ForwardOptions options;
  options.compute_logits = false;
  return model::Qwen2Model::from_weights(cfg, std::move(weights)).forward(input, options).hidden;  // (B, T, C)
}

at::Tensor ShardedModel::block_stage(int64_t layer, const at::Tensor& x, const model::ForwardInput& input,
                                     const model::ForwardOptions& forward_options) const {
  model::Qwen2Config cfg = config();
  cfg.num_hidden_layers = 1;
  model::Qwen2Weights weights;
  // Only its dtype and device are read (inputs_embeds are given).
  weights.embed_tokens = at::empty({0, cfg.hidden_size}, at::TensorOptions().dtype(compute_dtype_).device(device_));
  weights.layers.push_back(model_.weights().layers[static_cast<size_t>(layer)]);
  model::ForwardInput in;
  in.inputs_embeds = x;  // (B, T, C)
  in.attention_mask = input.attention_mask;
  in.position_ids = input.position_ids;
  model::ForwardOptions options;
  options.stop_after_layer = 0;
  options.compute_logits = false;
  at::Tensor y = model::Qwen2Model::from_weights(cfg, std::move(weights)).forward(in, options).hidden;  // (B, T, C)
  if (forward_options.steering.empty()) return y;
  const at::Tensor position_ids =
      input.position_ids.defined()
          ? input.position_ids
          : model::default_position_ids(input.attention_mask, 0, x.size(0), x.size(1), x.device());
  return model::apply_steering(y, forward_options.steering, layer, position_ids);
}

model::ForwardOutput ShardedModel::head_stage(const at::Tensor& x, const model::ForwardInput& /*input*/,
                                              const model::ForwardOptions& options) const {
  model::Qwen2Config cfg = config();
  cfg.num_hidden_layers = 0;
  model::Qwen2Weights weights;
  const auto& full = model_.weights();
  // A tied head reads the embedding (gathered by the caller).
  weights.embed_tokens = full.lm_head.defined() || !full.embed_tokens.defined()
                             ? at::empty({0, cfg.hidden_size}, at::TensorOptions().dtype(compute_dtype_).device(device_))
                             : full.embed_tokens;
  weights.norm = full.norm;
  weights.lm_head = full.lm_head;
  model::ForwardInput in;
  in.inputs_embeds = x;  // (B, T, C)
  model::ForwardOptions head_options;
  head_options.logits_index = options.logits_index;
  head_options.target_ids = options.target_ids;
  head_options.logit_temperature = options.logit_temperature;
  // logits (B, [T,] V), or token_logprobs shaped as target_ids; the callers take those two.
  return model::Qwen2Model::from_weights(cfg, std::move(weights)).forward(in, head_options);
}

// ---- training steps ------------------------------------------------------------------

at::Tensor ShardedModel::forward_backward(const model::ForwardInput& input, const model::ForwardOptions& options,
                                          const LossFunction& loss_fn) {
  ReleaseAll guard{[this] {
    for (auto& unit : units_) release(unit);
  }};
  return options_.per_block ? forward_backward_per_block(input, options, loss_fn)
                            : forward_backward_all(input, options, loss_fn);
}

at::Tensor ShardedModel::forward_backward_all(const model::ForwardInput& input, const model::ForwardOptions& options,
                                              const LossFunction& loss_fn) {
  for (auto& unit : units_) gather(unit, true);
  at::Tensor loss = loss_fn(model_.forward(input, options));
  NLA_CHECK(loss.numel() == 1, "loss function must return a scalar");
  loss.backward();
  for (auto& unit : units_) {
    reduce_scatter_grad(unit);
    release(unit);
  }
  return loss.detach();
}

at::Tensor ShardedModel::forward_backward_per_block(const model::ForwardInput& input,
                                                    const model::ForwardOptions& options,
                                                    const LossFunction& loss_fn) {
  NLA_CHECK(options.capture_layers.empty(), "per-block sharding: capture_layers in training is not supported");
  const int64_t n_run = blocks_run(options);
  const bool head = runs_head(options);
  const bool tied = head && tied_head_;

  // Forward without autograd, keeping the block boundaries: (B, T, C) each.
  std::vector<at::Tensor> boundary(static_cast<size_t>(n_run + 1));
  {
    c10::NoGradGuard no_grad;
    gather(embed_unit(), false);
    boundary[0] = embed_stage(input);
    release(embed_unit());
    for (int64_t l = 0; l < n_run; ++l) {
      gather(block_unit(l), false);
      boundary[static_cast<size_t>(l + 1)] = block_stage(l, boundary[static_cast<size_t>(l)], input, options);
      release(block_unit(l));
    }
  }

  // Head and loss with autograd, from the last boundary as a leaf.
  at::Tensor last = boundary[static_cast<size_t>(n_run)].detach().requires_grad_(true);  // (B, T, C)
  model::ForwardOutput out;
  out.hidden = last;
  if (head) {
    gather(*head_unit(), true);
    if (tied) gather(embed_unit(), true);  // stays gathered until the embedding's backward
    auto head_out = head_stage(last, input, options);
    out.logits = head_out.logits;
    out.token_logprobs = head_out.token_logprobs;
  }
  if (extra_unit()) gather(*extra_unit(), true);
  at::Tensor loss = loss_fn(out);
  NLA_CHECK(loss.numel() == 1, "loss function must return a scalar");
  loss.backward();
  at::Tensor grad_x = last.grad();  // (B, T, C); undefined when the loss ignores the blocks
  if (extra_unit()) {
    reduce_scatter_grad(*extra_unit());
    release(*extra_unit());
  }
  if (head) {
    reduce_scatter_grad(*head_unit());
    release(*head_unit());
  }

  // Backward block by block: regather, recompute with grad, backprop, reduce-scatter.
  for (int64_t l = n_run - 1; l >= 0 && grad_x.defined(); --l) {
    gather(block_unit(l), true);
    at::Tensor x_in = boundary[static_cast<size_t>(l)].detach().requires_grad_(true);  // (B, T, C)
    at::Tensor y = block_stage(l, x_in, input, options);
    y.backward(grad_x);
    grad_x = x_in.grad();
    reduce_scatter_grad(block_unit(l));
    release(block_unit(l));
    boundary[static_cast<size_t>(l + 1)] = at::Tensor();
  }

  if (grad_x.defined() || tied) {
    if (!tied) gather(embed_unit(), true);
    if (grad_x.defined()) {
      at::Tensor x0 = embed_stage(input);  // (B, T, C)
      if (x0.requires_grad()) x0.backward(grad_x);
    }
    reduce_scatter_grad(embed_unit());
    release(embed_unit());
  }
  return loss.detach();
}

at::Tensor ShardedModel::forward_then(const model::ForwardInput& input, const model::ForwardOptions& options,
                                      const LossFunction& post) {
  c10::NoGradGuard no_grad;
  auto output = forward(input, options);
  if (!extra_unit()) return post(output);
  ReleaseAll guard{[this] { release(*extra_unit()); }};
  gather(*extra_unit(), false);
  return post(output);
}

const at::Tensor& ShardedModel::extra(const std::string& name) const {
  for (const auto& extra : extras_)
    if (extra.name == name) return extra.tensor;
  NLA_INPUT_ERROR("no extra parameter named '", name, "'");
}

model::ForwardOutput ShardedModel::forward(const model::ForwardInput& input, const model::ForwardOptions& options) {
  c10::NoGradGuard no_grad;
  ReleaseAll guard{[this] {
    for (auto& unit : units_) release(unit);
  }};
  if (!options_.per_block) {
    for (auto& unit : units_) gather(unit, false);
    return model_.forward(input, options);
  }
  const int64_t n_run = blocks_run(options);
  model::ForwardOutput out;
  gather(embed_unit(), false);
  at::Tensor x = embed_stage(input);
  release(embed_unit());
  for (int64_t l = 0; l < n_run; ++l) {
    gather(block_unit(l), false);
    x = block_stage(l, x, input, options);
    release(block_unit(l));
    if (std::find(options.capture_layers.begin(), options.capture_layers.end(), l) != options.capture_layers.end())
      out.captured[l] = x;
  }
  for (int64_t l : options.capture_layers)
    NLA_CHECK(out.captured.count(l), "capture layer ", l, " not computed (ran ", n_run, " blocks)");
  out.hidden = x;
  if (runs_head(options)) {
    gather(*head_unit(), false);
    if (tied_head_) gather(embed_unit(), false);
    auto head_out = head_stage(x, input, options);
    out.logits = head_out.logits;
    out.token_logprobs = head_out.token_logprobs;
  }
  return out;
}

// ---- full parameters -----------------------------------------------------------------

void ShardedModel::for_each_full_parameter(const std::function<void(const std::string&, const at::Tensor&)>& visit) {
  for (auto& unit : units_) {
    at::Tensor full = at::empty({unit.padded_numel}, unit.master.options());  // (padded) fp32
    comm_.all_gather(unit.master, full);
    for (auto& entry : unit.entries) visit(entry.hf_name, full.narrow(0, entry.offset, entry.numel).view(entry.shape));
  }
}

model::Qwen2Model ShardedModel::gather_model() {
  model::Qwen2Weights weights;
  auto slots = model::qwen2_parameter_slots(weights, config(), model_.num_loaded_layers(), has_head_);
  std::map<std::string, at::Tensor*> by_name;
  for (auto& slot : slots) by_name[slot.hf_name] = slot.tensor;
  for_each_full_parameter([&](const std::string& name, const at::Tensor& tensor) {
    auto slot = by_name.find(name);
    if (slot != by_name.end()) *slot->second = tensor.clone();  // extras are not the model's
  });
  return model::Qwen2Model::from_weights(config(), std::move(weights));
}

ShardMemory ShardedModel::memory() const {
  ShardMemory memory;
  const int64_t compute_bytes = static_cast<int64_t>(c10::elementSize(compute_dtype_));
  for (const auto& unit : units_) {
    memory.parameters += static_cast<int64_t>(unit.master.nbytes());
    if (!unit.compute.is_same(unit.master)) memory.parameters += static_cast<int64_t>(unit.compute.nbytes());
    memory.gradients += static_cast<int64_t>(unit.grad.nbytes());
    memory.largest_unit = std::max(memory.largest_unit, unit.padded_numel * compute_bytes);
    memory.total_parameters += unit.numel;
  }
  return memory;
}

}  // namespace nla::dist
