// Shared pieces of the model benchmarks: the model under test, FLOP counts, the GEMM
// peak of this run, peak memory.
#pragma once

#include <cstdint>
#include <string>

#include "nla/bench/bench.hpp"
#include "nla/model/qwen2.hpp"

namespace nla::bench {

// The preset (random init, fp32 CPU / bf16 CUDA) or --model directory.
model::Qwen2Model bench_model(const BenchOptions& options);

// Matmul FLOPs of a forward per token at context length `context`: 2 x (the block and
// head weights) + 4 x layers x context x hidden (QK^T and PV over the whole context,
// the PaLM convention, no causal halving).
double forward_flops_per_token(const model::Qwen2Config& config, double context);

// Best fp32 GEMM GFLOP/s of this run (bench_matmul), the yardstick of "fraction of peak".
double gemm_peak_gflops(const BenchOptions& options);

// Resets the RSS high-water mark (Linux clear_refs 5), so the peak is this benchmark's.
void reset_peak_memory();
// VmHWM of /proc/self/status in MB (getrusage where /proc is absent).
double peak_memory_mb();

}  // namespace nla::bench
