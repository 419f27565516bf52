// nla bench forward: inference forward (logits at every position) at --batch x --seq-len.
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <chrono>

#include "bench_model_common.hpp"
#include "device_peak.hpp"

namespace nla::bench {

BenchReport bench_forward(const BenchOptions& options) {
  BenchReport report{"forward", {}};
  const GemmPeaks peaks = measure_gemm_peaks(options, bench_device(options));
  reset_peak_memory();
  model::Qwen2Model model = bench_model(options);
  const auto& config = model.config();
  const GemmPeak peak = gemm_peak_for(peaks, model.dtype(), at::globalContext().allowTF32CuBLAS());
  c10::InferenceMode inference;
  model::ForwardInput input;
  input.input_ids = at::randint(config.vocab_size, {options.batch, options.seq_len},
                                at::TensorOptions().dtype(at::kLong).device(model.device()));
  auto run = [&] {
    model.forward(input).logits.sum().item<float>();  // .item() waits for its stream
    synchronize(model.device());                      // and the clock for the whole device
  };
  run();  // warm-up
  double best = 1e30;
  for (int repeat = 0; repeat < options.repeats; ++repeat) {
    auto start = std::chrono::steady_clock::now();
    run();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  const double tokens = static_cast<double>(options.batch * options.seq_len);
  const double gflops = forward_flops_per_token(config, static_cast<double>(options.seq_len)) * tokens / best / 1e9;
  const std::string shape = options.preset + " B=" + std::to_string(options.batch) + " T=" +
                            std::to_string(options.seq_len) + ", best of " + std::to_string(options.repeats);
  report.rows.push_back({"tokens/s", tokens / best, "tok/s", shape});
  report.rows.push_back({"time per forward", best * 1e3, "ms", ""});
  report.rows.push_back({"achieved", gflops, "GFLOP/s", "2 x weights + 4 L T C per token"});
  report.rows.push_back({"gemm peak (this run)", peak.gflops, "GFLOP/s", peak.note});
  report.rows.push_back({"fraction of peak", fraction_of_peak(gflops, peak.gflops), "", ""});
  report.rows.push_back({"peak memory (RSS)", peak_memory_mb(), "MB", "VmHWM after reset"});
  return report;
}

}  // namespace nla::bench
