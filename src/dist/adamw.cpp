// AdamW on the shards, and its sharded save/load with resharding (see adamw.hpp).
#include "nla/dist/adamw.hpp"

#include <c10/core/GradMode.h>  // c10::NoGradGuard (LibTorch 2.x has no at:: alias here)
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
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
  const double beta1 = options_.beta1, beta2 = options_.beta2;
  // The op sequence of torch 1.13's AdamW (C++ frontend and _single_tensor_adamw), so a
  // single rank reproduces it bit for bit.
  const double bias_correction1 = 1 - std::pow(beta1, static_cast<double>(step_));
  const double bias_correction2 = 1 - std::pow(beta2, static_cast<double>(step_));
  const double step_size = lr / bias_correction1;
  c10::NoGradGuard no_grad;
  auto& units = model_.units();
  for (size_t u = 0; u < units.size(); ++u) {
    if (units[u].frozen) continue;
    at::Tensor& param = units[u].master;  // (S)
    const at::Tensor& grad = units[u].grad;
    if (options_.weight_decay != 0) param.mul_(1 - lr * options_.weight_decay);
    exp_avg_[u].mul_(beta1).add_(grad, 1 - beta1);
    exp_avg_sq_[u].mul_(beta2).addcmul_(grad, grad, 1 - beta2);
    at::Tensor denom = (exp_avg_sq_[u].sqrt() / std::sqrt(bias_correction2)).add_(options_.eps);
    param.addcdiv_(exp_avg_[u], denom, -step_size);
  }
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
