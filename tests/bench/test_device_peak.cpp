// The yardstick of "fraction of peak": which measured GEMM peak a model's dtype is compared
// with, the MFU arithmetic, and the CPU measurement (the rows `nla bench matmul` printed
// before CUDA peaks existed). The CUDA measurement itself needs a GPU: tests/gpu/.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "device_peak.hpp"

namespace nla::bench {
namespace {

// Distinct values, so a wrong pick cannot pass by coincidence.
GemmPeaks cuda_peaks() {
  GemmPeaks peaks;
  peaks.cuda = true;
  peaks.bf16 = 700e3;
  peaks.tf32 = 350e3;
  peaks.fp32 = 50e3;
  peaks.cuda_size = 8192;
  return peaks;
}

TEST(DevicePeak, CudaPrecisionFollowsTheModelDtypeAndTf32) {
  EXPECT_EQ(gemm_precision_for(c10::ScalarType::BFloat16, true, false), GemmPrecision::bf16);
  EXPECT_EQ(gemm_precision_for(c10::ScalarType::BFloat16, true, true), GemmPrecision::bf16);
  EXPECT_EQ(gemm_precision_for(c10::ScalarType::Half, true, false), GemmPrecision::bf16);
  EXPECT_EQ(gemm_precision_for(c10::ScalarType::Float, true, true), GemmPrecision::tf32);
  EXPECT_EQ(gemm_precision_for(c10::ScalarType::Float, true, false), GemmPrecision::fp32);
}

TEST(DevicePeak, CpuIsAlwaysMeasuredAgainstFp32) {
  for (auto dtype : {c10::ScalarType::Float, c10::ScalarType::BFloat16, c10::ScalarType::Half})
    for (bool tf32 : {false, true}) EXPECT_EQ(gemm_precision_for(dtype, false, tf32), GemmPrecision::fp32);
}

TEST(DevicePeak, PicksThePeakOfThePrecisionAndNamesIt) {
  const GemmPeaks peaks = cuda_peaks();
  GemmPeak bf16 = gemm_peak_for(peaks, c10::ScalarType::BFloat16, true);
  EXPECT_EQ(bf16.gflops, 700e3);
  EXPECT_EQ(bf16.note, "bf16 GEMM n=8192 (bench matmul), the model's precision");
  GemmPeak tf32 = gemm_peak_for(peaks, c10::ScalarType::Float, true);
  EXPECT_EQ(tf32.gflops, 350e3);
  EXPECT_EQ(tf32.precision, GemmPrecision::tf32);
  GemmPeak fp32 = gemm_peak_for(peaks, c10::ScalarType::Float, false);
  EXPECT_EQ(fp32.gflops, 50e3);
  EXPECT_STREQ(gemm_precision_name(fp32.precision), "fp32");

  GemmPeaks cpu;
  cpu.fp32 = 120;
  GemmPeak on_cpu = gemm_peak_for(cpu, c10::ScalarType::Float, true);
  EXPECT_EQ(on_cpu.gflops, 120);
  EXPECT_EQ(on_cpu.note, "bench matmul, best size");  // the note the CPU reports always had
}

TEST(DevicePeak, FractionOfPeak) {
  // The case: a bf16 model at 180 TFLOP/s on a GPU whose bf16 GEMM reaches 720.
  EXPECT_DOUBLE_EQ(fraction_of_peak(180e3, 720e3), 0.25);
  EXPECT_TRUE(std::isnan(fraction_of_peak(1.0, 0.0)));   // not measured: no number, not inf
  EXPECT_TRUE(std::isnan(fraction_of_peak(1.0, -1.0)));
}

TEST(DevicePeak, CpuMeasurementKeepsTheMatmulRows) {
  BenchOptions options;
  options.repeats = 1;
  const GemmPeaks peaks = measure_gemm_peaks(options, c10::Device(c10::DeviceType::CPU));
  EXPECT_FALSE(peaks.cuda);
  ASSERT_EQ(peaks.rows.size(), 3u);
  const char* names[] = {"gemm n=512", "gemm n=1024", "gemm n=2048"};
  double best = 0;
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(peaks.rows[i].metric, names[i]);
    EXPECT_EQ(peaks.rows[i].unit, "GFLOP/s");
    EXPECT_EQ(peaks.rows[i].note.rfind("best of 1, threads ", 0), 0u) << peaks.rows[i].note;
    EXPECT_GT(peaks.rows[i].value, 0);
    best = std::max(best, peaks.rows[i].value);
  }
  EXPECT_EQ(peaks.fp32, best);  // the yardstick is the best size
  EXPECT_EQ(peaks.bf16, 0);
  EXPECT_EQ(peaks.tf32, 0);
}

}  // namespace
}  // namespace nla::bench
