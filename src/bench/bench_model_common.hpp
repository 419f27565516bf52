// Shared pieces of the model benchmarks: the device and model under test, FLOP counts,
// peak memory. The GEMM peak of the run is in device_peak.hpp.
#pragma once

#include <c10/core/Device.h>

#include <cstdint>
#include <string>

#include "nla/bench/bench.hpp"
#include "nla/model/qwen2.hpp"

namespace nla::bench {

// Where the model benchmarks run: the CUDA device when there is one, else the CPU.
c10::Device bench_device(const BenchOptions& options);

// The preset (random init, fp32 CPU / bf16 CUDA) or --model directory, on bench_device.
model::Qwen2Model bench_model(const BenchOptions& options);

// Matmul FLOPs of a forward per token at context length `context`: 2 x (the block and
// head weights) + 4 x layers x context x hidden (QK^T and PV over the whole context,
// the PaLM convention, no causal halving).
double forward_flops_per_token(const model::Qwen2Config& config, double context);

// Resets the RSS high-water mark (Linux clear_refs 5), so the peak is this benchmark's.
void reset_peak_memory();
// VmHWM of /proc/self/status in MB (getrusage where /proc is absent).
double peak_memory_mb();

}  // namespace nla::bench
