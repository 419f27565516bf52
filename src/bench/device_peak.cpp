// GEMM peaks of this run, the yardstick of "fraction of peak" (see device_peak.hpp).
#include "device_peak.hpp"

#include "nla/core/timing.hpp"  // defines: seconds_since
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <limits>
#include <utility>

namespace nla::bench {

namespace {

// fp32 GEMMs on the CPU at three sizes (the rows of `nla bench matmul` on a CPU machine).
void measure_cpu(const BenchOptions& options, GemmPeaks& peaks) {
  for (int64_t n : {512, 1024, 2048}) {
    auto a = at::randn({n, n});
    auto b = at::randn({n, n});
    at::mm(a, b);  // warm-up
    double best = 1e30;
    for (int repeat = 0; repeat < std::max(1, options.repeats); ++repeat) {
      auto start = std::chrono::steady_clock::now();
      auto c = at::mm(a, b);
      best = std::min(best, seconds_since(start));
    }
    const double gflops = 2.0 * n * n * n / best / 1e9;
    peaks.rows.push_back({"gemm n=" + std::to_string(n), gflops, "GFLOP/s",
                          "best of " + std::to_string(options.repeats) + ", threads " + std::to_string(at::get_num_threads())});
    peaks.fp32 = std::max(peaks.fp32, gflops);
  }
}

// Sets cuBLAS's TF32 permission for its lifetime and restores the previous one after,
// exceptions included, so the benchmark that follows runs under the user's setting.
class Tf32Setting {
 public:
  explicit Tf32Setting(bool allow) : before_(at::globalContext().allowTF32CuBLAS()) {
    at::globalContext().setAllowTF32CuBLAS(allow);
  }
  ~Tf32Setting() { at::globalContext().setAllowTF32CuBLAS(before_); }
  Tf32Setting(const Tf32Setting&) = delete;
  Tf32Setting& operator=(const Tf32Setting&) = delete;

 private:
  bool before_;
};

// GFLOP/s of an n x n x n GEMM in `dtype` on a CUDA device: warm-ups (cuBLAS handle and
// workspace, kernel choice, clocks), then `calls` back-to-back GEMMs between two device
// synchronizations, best of `repeats`.
double cuda_gemm_gflops(c10::Device device, int64_t n, c10::ScalarType dtype, bool tf32, int repeats) {
  constexpr int warm_ups = 3, calls = 10;
  Tf32Setting setting(tf32);
  auto options = at::TensorOptions().dtype(dtype).device(device);
  at::Tensor a = at::randn({n, n}, options), b = at::randn({n, n}, options);  // (n, n)
  at::Tensor c = at::empty({n, n}, options);
  for (int i = 0; i < warm_ups; ++i) at::mm_out(c, a, b);
  synchronize(device);
  double best = 1e30;
  for (int repeat = 0; repeat < std::max(1, repeats); ++repeat) {
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < calls; ++i) at::mm_out(c, a, b);
    synchronize(device);
    best = std::min(best, seconds_since(start) / calls);
  }
  return 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n) / best / 1e9;
}

void measure_cuda(const BenchOptions& options, c10::Device device, GemmPeaks& peaks) {
  // Large enough that every precision runs at its plateau on A100/H100-class GPUs;
  // 3 x 256 MB in fp32.
  constexpr int64_t n = 8192;
  peaks.cuda = true;
  peaks.cuda_size = n;
  peaks.bf16 = cuda_gemm_gflops(device, n, at::kBFloat16, false, options.repeats);
  peaks.tf32 = cuda_gemm_gflops(device, n, at::kFloat, true, options.repeats);
  peaks.fp32 = cuda_gemm_gflops(device, n, at::kFloat, false, options.repeats);
  const std::string note = "cuBLAS n=" + std::to_string(n) + ", best of " + std::to_string(std::max(1, options.repeats)) +
                           " x 10 calls";
  const std::pair<const char*, double> measured[] = {{"bf16", peaks.bf16}, {"tf32", peaks.tf32}, {"fp32", peaks.fp32}};
  for (const auto& [name, gflops] : measured)
    peaks.rows.push_back({std::string("gemm ") + name + " n=" + std::to_string(n), gflops, "GFLOP/s", note});
}

}  // namespace

const char* gemm_precision_name(GemmPrecision precision) {
  switch (precision) {
    case GemmPrecision::fp32: return "fp32";
    case GemmPrecision::tf32: return "tf32";
    case GemmPrecision::bf16: return "bf16";
  }
  return "?";
}

GemmPrecision gemm_precision_for(c10::ScalarType dtype, bool cuda, bool tf32_allowed) {
  if (!cuda) return GemmPrecision::fp32;  // the CPU yardstick is fp32 whatever the dtype
  // fp16 runs on the same tensor cores at the bf16 rate (A100, H100).
  if (dtype == c10::ScalarType::BFloat16 || dtype == c10::ScalarType::Half) return GemmPrecision::bf16;
  return tf32_allowed ? GemmPrecision::tf32 : GemmPrecision::fp32;
}

GemmPeak gemm_peak_for(const GemmPeaks& peaks, c10::ScalarType dtype, bool tf32_allowed) {
  GemmPeak peak;
  peak.precision = gemm_precision_for(dtype, peaks.cuda, tf32_allowed);
  switch (peak.precision) {
    case GemmPrecision::fp32: peak.gflops = peaks.fp32; break;
    case GemmPrecision::tf32: peak.gflops = peaks.tf32; break;
    case GemmPrecision::bf16: peak.gflops = peaks.bf16; break;
  }
  peak.note = peaks.cuda ? std::string(gemm_precision_name(peak.precision)) + " GEMM n=" +
                               std::to_string(peaks.cuda_size) + " (bench matmul), the model's precision"
                         : "bench matmul, best size";
  return peak;
}

GemmPeaks measure_gemm_peaks(const BenchOptions& options, c10::Device device) {
  GemmPeaks peaks;
  if (device.is_cuda())
    measure_cuda(options, device, peaks);
  else
    measure_cpu(options, peaks);
  return peaks;
}

double fraction_of_peak(double achieved_gflops, double peak_gflops) {
  if (!(peak_gflops > 0)) return std::numeric_limits<double>::quiet_NaN();
  return achieved_gflops / peak_gflops;
}

void synchronize(c10::Device device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.has_index() ? device.index() : -1);
}

}  // namespace nla::bench
