// fp32 GEMM throughput: the peak that the model benchmarks report their FLOP/s against.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>

#include "nla/bench/bench.hpp"

namespace nla::bench {

BenchReport bench_matmul(const BenchOptions& options) {
  BenchReport report{"matmul", {}};
  for (int64_t n : {512, 1024, 2048}) {
    auto a = at::randn({n, n});
    auto b = at::randn({n, n});
    at::mm(a, b);  // warm-up
    double best = 1e30;
    for (int repeat = 0; repeat < std::max(1, options.repeats); ++repeat) {
      auto start = std::chrono::steady_clock::now();
      auto c = at::mm(a, b);
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    report.rows.push_back({"gemm n=" + std::to_string(n), 2.0 * n * n * n / best / 1e9, "GFLOP/s",
                           "best of " + std::to_string(options.repeats) + ", threads " + std::to_string(at::get_num_threads())});
  }
  return report;
}

}  // namespace nla::bench
