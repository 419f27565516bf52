// The yardstick of the model benchmarks: the GEMM peak of this machine, measured in the same
// run, in the precision the benchmark computes in ("fraction of peak" = MFU).
//   CPU:  fp32 GEMMs at n = 512, 1024, 2048, best size, whatever the model's dtype (as
//         `nla bench matmul` has always measured it).
//   CUDA: cuBLAS GEMMs at n = 8192 in bf16, tf32 and fp32 (TF32 toggled for the two fp32 runs
//         and restored). A bf16 or fp16 model is measured against the bf16 peak; an fp32 model
//         against the tf32 peak when cuBLAS may use TF32 (at::globalContext().allowTF32CuBLAS()),
//         else against the fp32 peak.
#pragma once

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <string>
#include <vector>

#include "nla/bench/bench.hpp"

namespace nla::bench {

enum class GemmPrecision { fp32, tf32, bf16 };

const char* gemm_precision_name(GemmPrecision precision);

// What one run measured, in GFLOP/s; 0 where not measured (on CPU only fp32 is).
struct GemmPeaks {
  bool cuda = false;
  double fp32 = 0;
  double tf32 = 0;
  double bf16 = 0;
  int64_t cuda_size = 0;       // n of the CUDA GEMMs
  std::vector<BenchRow> rows;  // every measurement: the rows of `nla bench matmul`
};

// The peak one benchmark is compared with, and the note of its report row.
struct GemmPeak {
  GemmPrecision precision = GemmPrecision::fp32;
  double gflops = 0;
  std::string note;
};

// The precision a matmul in `dtype` runs in (see the top of this file).
GemmPrecision gemm_precision_for(c10::ScalarType dtype, bool cuda, bool tf32_allowed);

// The peak for a model computing in `dtype`; `tf32_allowed` only matters for fp32 on CUDA.
GemmPeak gemm_peak_for(const GemmPeaks& peaks, c10::ScalarType dtype, bool tf32_allowed);

// Measures on `device` (CPU or CUDA). Best of options.repeats timings each.
GemmPeaks measure_gemm_peaks(const BenchOptions& options, c10::Device device);

// achieved / peak; NaN when the peak was not measured (<= 0).
double fraction_of_peak(double achieved_gflops, double peak_gflops);

// Waits for the device's queued work, so a clock read after it includes that work (no-op on CPU).
void synchronize(c10::Device device);

}  // namespace nla::bench
