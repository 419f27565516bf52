// Shared pieces of the model benchmarks (see bench_model_common.hpp).
#include "bench_model_common.hpp"

#include <ATen/ATen.h>
#include <sys/resource.h>

#include <algorithm>
#include <fstream>
#include <string>

namespace nla::bench {

c10::Device bench_device(const BenchOptions& options) {
  return at::hasCUDA() ? c10::Device(c10::DeviceType::CUDA) : c10::Device(c10::DeviceType::CPU);
}

model::Qwen2Model bench_model(const BenchOptions& options) {
  model::LoadOptions load;
  load.device = bench_device(options);
  if (load.device.is_cuda()) load.dtype = at::kBFloat16;
  if (!options.model.empty()) return model::Qwen2Model::load(options.model, load);
  return model::Qwen2Model::random_init(model::qwen2_preset(options.preset), 0, load);
}

double forward_flops_per_token(const model::Qwen2Config& c, double context) {
  double kv = static_cast<double>(c.num_key_value_heads * c.head_dim());
  double hidden = static_cast<double>(c.hidden_size);
  double block = hidden * hidden * 2 + 2 * hidden * kv + 3 * hidden * static_cast<double>(c.intermediate_size);
  double weights = static_cast<double>(c.num_hidden_layers) * block + static_cast<double>(c.vocab_size) * hidden;
  return 2 * weights + 4 * static_cast<double>(c.num_hidden_layers) * context * hidden;
}

void reset_peak_memory() {
  std::ofstream clear("/proc/self/clear_refs");
  if (clear) clear << "5";
}

double peak_memory_mb() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // kB
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

}  // namespace nla::bench
