// AdamW on the shards, and its sharded save/load with resharding (see adamw.hpp).
#include "nla/dist/adamw.hpp"

#include <c10/core/GradMode.h>  // c10::NoGradGuard (LibTorch 2.x has no at:: alias here)
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <torch/version.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <fstream>
#include <memory>

#include "nla/core/atomic_file.hpp"
#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/core/world.hpp"
#include "nla/io/safetensors.hpp"

namespace nla::dist {

namespace {

constexpr const char* kIndexName = "optimizer_state.json";
constexpr const char* kFormat = "nla-sharded-adamw";

std::string rank_file_name(int rank, int size) {
  char name[64];
  std::snprintf(name, sizeof name, "optimizer-rank%05d-of-%05d.safetensors", rank, size);
  return name;
}

// [begin, end) of the unpadded elements rank r owns when `numel` is split over `size`.
std::pair<int64_t, int64_t> owned_range(int64_t numel, int rank, int size) {
  const int64_t shard = (numel + size - 1) / size;
  const int64_t begin = std::min(numel, rank * shard);
  return {begin, std::min(numel, begin + shard)};
}

}  // namespace

// LibTorch's fused AdamW: CUDA from 2.0, the CPU from 2.4.
#if TORCH_VERSION_MAJOR >= 2
#define NLA_HAS_FUSED_ADAMW_CUDA 1
#endif
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define NLA_HAS_FUSED_ADAMW_CPU 1
#endif

bool fused_adamw_available(const at::Device& device) {
#ifdef NLA_HAS_FUSED_ADAMW_CUDA
  if (device.is_cuda()) return true;
#endif
#ifdef NLA_HAS_FUSED_ADAMW_CPU
  if (device.is_cpu()) return true;
#endif
  (void)device;
  return false;
}

AdamWKernel resolve_adamw_kernel(AdamWKernel kernel, const at::Device& device) {
  if (kernel != AdamWKernel::automatic) return kernel;
  (void)device;
  // NLA_ADAMW_KERNEL chooses; unset: foreach. The fused kernel is opt-in until a GPU run
  // has checked it against the others (tests/dist/test_adamw.cpp, CudaKernelsMatchTheCpu).
  const char* chosen = std::getenv("NLA_ADAMW_KERNEL");
  if (chosen == nullptr || *chosen == '\0') return AdamWKernel::foreach;
  for (AdamWKernel candidate : {AdamWKernel::per_tensor, AdamWKernel::foreach, AdamWKernel::fused})
    if (std::string(chosen) == adamw_kernel_name(candidate)) return candidate;
  NLA_INPUT_ERROR("environment variable NLA_ADAMW_KERNEL: expected per_tensor, foreach or fused, got '", chosen, "'");
}

const char* adamw_kernel_name(AdamWKernel kernel) {
  switch (kernel) {
    case AdamWKernel::automatic: return "automatic";
    case AdamWKernel::per_tensor: return "per_tensor";
    case AdamWKernel::foreach: return "foreach";
    case AdamWKernel::fused: return "fused";
  }
  return "?";
}

namespace {

// torch 1.13's _single_tensor_adamw, op for op.
void update_per_tensor(AdamWTensors& t, double lr, double beta1, double beta2, double bias_correction2,
                       double step_size, const AdamWOptions& o) {
  for (size_t i = 0; i < t.params.size(); ++i) {
    if (o.weight_decay != 0) t.params[i].mul_(1 - lr * o.weight_decay);
    t.exp_avgs[i].mul_(beta1).add_(t.grads[i], 1 - beta1);
    t.exp_avg_sqs[i].mul_(beta2).addcmul_(t.grads[i], t.grads[i], 1 - beta2);
    at::Tensor denom = (t.exp_avg_sqs[i].sqrt() / std::sqrt(bias_correction2)).add_(o.eps);
    t.params[i].addcdiv_(t.exp_avgs[i], denom, -step_size);
  }
}

// The same ops over the whole list (torch 1.13's _multi_tensor_adamw).
void update_foreach(AdamWTensors& t, double lr, double beta1, double beta2, double bias_correction2,
                    double step_size, const AdamWOptions& o) {
  if (o.weight_decay != 0) at::_foreach_mul_(t.params, 1 - lr * o.weight_decay);
  at::_foreach_mul_(t.exp_avgs, beta1);
  at::_foreach_add_(t.exp_avgs, t.grads, 1 - beta1);
  at::_foreach_mul_(t.exp_avg_sqs, beta2);
  at::_foreach_addcmul_(t.exp_avg_sqs, t.grads, t.grads, 1 - beta2);
  std::vector<at::Tensor> denom = at::_foreach_sqrt(t.exp_avg_sqs);
  at::_foreach_div_(denom, std::sqrt(bias_correction2));
  at::_foreach_add_(denom, o.eps);
  at::_foreach_addcdiv_(t.params, t.exp_avgs, denom, -step_size);
}

void update_fused(AdamWTensors& t, int64_t step, double lr, const AdamWOptions& o) {
#ifdef NLA_HAS_FUSED_ADAMW_CUDA
  // The kernel reads each tensor's step from a float tensor on its device (shared here).
  at::Tensor step_tensor =
      at::full({}, static_cast<double>(step), at::TensorOptions().dtype(at::kFloat).device(t.params[0].device()));
  std::vector<at::Tensor> steps(t.params.size(), step_tensor);
  at::_fused_adamw_(t.params, t.grads, t.exp_avgs, t.exp_avg_sqs, /*max_exp_avg_sqs=*/{}, steps, lr, o.beta1,
                    o.beta2, o.weight_decay, o.eps, /*amsgrad=*/false, /*maximize=*/false, c10::nullopt, c10::nullopt);
#else
  (void)t, (void)step, (void)lr, (void)o;
  NLA_THROW("AdamW: the fused kernel needs LibTorch >= 2.0 (this build has ", TORCH_VERSION, ")");
#endif
}

}  // namespace

void adamw_update(AdamWTensors& tensors, int64_t step, double lr, const AdamWOptions& options) {
  if (tensors.params.empty()) return;
  const at::Device device = tensors.params[0].device();
  const AdamWKernel kernel = resolve_adamw_kernel(options.kernel, device);
  NLA_CHECK(kernel != AdamWKernel::fused || fused_adamw_available(device),
            "AdamW: this LibTorch (", TORCH_VERSION, ") has no fused kernel for ", device.str(), " tensors");
  c10::NoGradGuard no_grad;
  const double beta1 = options.beta1, beta2 = options.beta2;
  const double bias_correction1 = 1 - std::pow(beta1, static_cast<double>(step));
  const double bias_correction2 = 1 - std::pow(beta2, static_cast<double>(step));
  const double step_size = lr / bias_correction1;
  switch (kernel) {
    case AdamWKernel::fused: update_fused(tensors, step, lr, options); break;
    case AdamWKernel::foreach:
      update_foreach(tensors, lr, beta1, beta2, bias_correction2, step_size, options);
      break;
    default: update_per_tensor(tensors, lr, beta1, beta2, bias_correction2, step_size, options); break;
  }
}

ShardedAdamW::ShardedAdamW(ShardedModel& model, AdamWOptions options) : model_(model), options_(options) {
  for (auto& unit : model_.units()) {
    exp_avg_.push_back(at::zeros_like(unit.master));     // (S) fp32
    exp_avg_sq_.push_back(at::zeros_like(unit.master));  // (S) fp32
  }
}

int64_t ShardedAdamW::state_bytes() const {
  int64_t bytes = 0;
  for (size_t u = 0; u < exp_avg_.size(); ++u)
    bytes += static_cast<int64_t>(exp_avg_[u].nbytes() + exp_avg_sq_[u].nbytes());
  return bytes;
}

void ShardedAdamW::step(double lr) {
  if (lr < 0) lr = options_.lr;
  ++step_;
  AdamWTensors trained;  // handles, every step: a unit may be frozen after construction
  auto& units = model_.units();
  for (size_t u = 0; u < units.size(); ++u) {
    if (units[u].frozen) continue;
    trained.params.push_back(units[u].master);
    trained.grads.push_back(units[u].grad);
    trained.exp_avgs.push_back(exp_avg_[u]);
    trained.exp_avg_sqs.push_back(exp_avg_sq_[u]);
  }
  adamw_update(trained, step_, lr, options_);
  model_.refresh_compute_shards();
}

void ShardedAdamW::save(const std::string& directory) const {
  const Communicator& comm = model_.comm();
  run_on_root(comm.mpi_comm(), [&] { fs::create_directories(directory); });
  const auto& units = model_.units();
  // This rank's unpadded slices, on the CPU for writing: (len_r) fp32 each.
  std::vector<at::Tensor> keep;
  std::vector<io::TensorBytes> tensors;
  for (size_t u = 0; u < units.size(); ++u) {
    auto [begin, end] = owned_range(units[u].numel, comm.rank(), comm.size());
    const int64_t length = end - begin;
    const std::pair<const char*, at::Tensor> parts[] = {
        {".master", units[u].master}, {".exp_avg", exp_avg_[u]}, {".exp_avg_sq", exp_avg_sq_[u]}};
    for (const auto& [suffix, shard] : parts) {
      keep.push_back(shard.narrow(0, 0, length).to(at::kCPU).contiguous());
      tensors.push_back({units[u].name + suffix, io::DType::F32, {length}, keep.back().data_ptr(),
                         static_cast<size_t>(keep.back().nbytes())});
    }
  }
  // Every rank writes its file; an error on any rank is raised on all before the index.
  int failed = 0;
  std::string message;
  try {
    io::write_safetensors(directory + "/" + rank_file_name(comm.rank(), comm.size()), tensors,
                          {{"format", kFormat}, {"rank", std::to_string(comm.rank())}});
  } catch (const std::exception& error) {
    failed = 1;
    message = error.what();
  }
  if (comm.all_reduce_scalar(failed, ReduceOp::max) > 0) {
    if (failed) NLA_THROW("saving optimizer state: ", message);
    NLA_THROW("saving optimizer state: another rank failed to write its file in ", directory);
  }
  run_on_root(comm.mpi_comm(), [&] {
    nlohmann::json index;
    index["format"] = kFormat;
    index["version"] = 1;
    index["step"] = step_;
    index["world_size"] = comm.size();
    index["options"] = {{"lr", options_.lr},
                        {"beta1", options_.beta1},
                        {"beta2", options_.beta2},
                        {"eps", options_.eps},
                        {"weight_decay", options_.weight_decay}};
    for (const auto& unit : units) {
      nlohmann::json entries = nlohmann::json::array();
      for (const auto& entry : unit.entries)
        entries.push_back({{"name", entry.hf_name}, {"shape", entry.shape}, {"offset", entry.offset}});
      index["units"].push_back({{"name", unit.name}, {"numel", unit.numel}, {"entries", entries}});
    }
    write_file_atomic(directory + "/" + kIndexName, index.dump(2) + "\n");
  });
}

void ShardedAdamW::load(const std::string& directory) {
  // A bad or missing file may be seen by some ranks only (each reads other files): every
  // rank learns of it, so none is left waiting in a collective.
  const Communicator& comm = model_.comm();
  int kind = 0;  // 0 ok, 1 input error, 2 other error
  std::string message;
  try {
    load_local(directory);
  } catch (const InputError& error) {
    kind = 1;
    message = error.what();
  } catch (const std::exception& error) {
    kind = 2;
    message = error.what();
  }
  const int worst = static_cast<int>(comm.all_reduce_scalar(kind, ReduceOp::max));
  if (worst == 1) {
    if (kind == 1) NLA_INPUT_ERROR(message);
    NLA_INPUT_ERROR(directory, ": another rank could not read its part of the optimizer state");
  }
  if (worst == 2) {
    if (kind == 2) NLA_THROW("loading optimizer state from ", directory, ": ", message);
    NLA_THROW("loading optimizer state from ", directory, ": another rank failed");
  }
  model_.refresh_compute_shards();
  comm.barrier();  // every rank has read before anyone may overwrite the directory
}

void ShardedAdamW::load_local(const std::string& directory) {
  const Communicator& comm = model_.comm();
  const std::string index_path = directory + "/" + kIndexName;
  nlohmann::json index;
  {
    std::ifstream in(index_path);
    NLA_CHECK_INPUT(in, index_path, ": cannot open (no saved optimizer state here)");
    try {
      in >> index;
    } catch (const std::exception& error) {
      NLA_INPUT_ERROR(index_path, ": not valid JSON: ", error.what());
    }
  }
  NLA_CHECK_INPUT(index.value("format", "") == kFormat, index_path, ": field 'format': expected '", kFormat, "'");
  const int old_size = index.at("world_size").get<int>();
  auto& units = model_.units();
  NLA_CHECK_INPUT(index.at("units").size() == units.size(), index_path, ": field 'units': ", index.at("units").size(),
                  " units, but the model has ", units.size());
  for (size_t u = 0; u < units.size(); ++u) {
    const auto& saved = index["units"][u];
    NLA_CHECK_INPUT(saved.at("name") == units[u].name && saved.at("numel").get<int64_t>() == units[u].numel,
                    index_path, ": unit ", u, ": saved as '", saved.at("name").get<std::string>(), "' with ",
                    saved.at("numel").get<int64_t>(), " elements, but the model's is '", units[u].name, "' with ",
                    units[u].numel);
  }

  // Open the old rank files lazily: only those overlapping this rank's ranges.
  std::vector<std::unique_ptr<io::SafetensorsFile>> files(static_cast<size_t>(old_size));
  auto file = [&](int r) -> io::SafetensorsFile& {
    auto& slot = files[static_cast<size_t>(r)];
    if (!slot) slot = std::make_unique<io::SafetensorsFile>(directory + "/" + rank_file_name(r, old_size));
    return *slot;
  };
  const int64_t step = index.at("step").get<int64_t>();
  for (size_t u = 0; u < units.size(); ++u) {
    FlatUnit& unit = units[u];
    auto [begin, end] = owned_range(unit.numel, comm.rank(), comm.size());
    const std::pair<const char*, at::Tensor*> parts[] = {
        {".master", &unit.master}, {".exp_avg", &exp_avg_[u]}, {".exp_avg_sq", &exp_avg_sq_[u]}};
    for (const auto& [suffix, target] : parts) {
      at::Tensor host = at::zeros({unit.shard_numel}, at::kFloat);  // (S) padding stays zero
      for (int r = 0; r < old_size; ++r) {
        auto [old_begin, old_end] = owned_range(unit.numel, r, old_size);
        const int64_t lo = std::max(begin, old_begin), hi = std::min(end, old_end);
        if (lo >= hi) continue;
        io::SafetensorsFile& source = file(r);
        const std::string name = unit.name + suffix;
        const io::TensorInfo* info = source.find(name);
        NLA_CHECK_INPUT(info && info->dtype == io::DType::F32 &&
                            info->num_elements() == static_cast<uint64_t>(old_end - old_begin),
                        source.path(), ": tensor '", name, "': expected F32 with ", old_end - old_begin, " elements");
        const auto* data = reinterpret_cast<const float*>(source.data(*info));
        std::memcpy(host.data_ptr<float>() + (lo - begin), data + (lo - old_begin),
                    static_cast<size_t>(hi - lo) * sizeof(float));
      }
      target->copy_(host);
    }
  }
  step_ = step;
}

}  // namespace nla::dist
