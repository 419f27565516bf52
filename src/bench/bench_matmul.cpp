// GEMM throughput: the peaks that the model benchmarks report their FLOP/s against
// (device_peak.cpp): fp32 at three sizes on a CPU; bf16, tf32 and fp32 at n = 8192 on CUDA.
#include "bench_model_common.hpp"
#include "device_peak.hpp"
#include "nla/bench/bench.hpp"

namespace nla::bench {

BenchReport bench_matmul(const BenchOptions& options) {
  return BenchReport{"matmul", measure_gemm_peaks(options, bench_device(options)).rows};
}

}  // namespace nla::bench
