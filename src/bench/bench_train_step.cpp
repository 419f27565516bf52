// nla bench train-step: forward + next-token cross-entropy + backward + AdamW update
// at --batch x --seq-len, every parameter trained. The update is nla's (dist::adamw_update,
// the kernel training uses), and each kernel this LibTorch has is timed on its own too.
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <chrono>

#include "bench_model_common.hpp"
#include "device_peak.hpp"
#include "nla/dist/adamw.hpp"

namespace nla::bench {

BenchReport bench_train_step(const BenchOptions& options) {
  BenchReport report{"train-step", {}};
  const GemmPeaks peaks = measure_gemm_peaks(options, bench_device(options));
  reset_peak_memory();
  model::Qwen2Model model = bench_model(options);
  const auto& config = model.config();
  const GemmPeak peak = gemm_peak_for(peaks, model.dtype(), at::globalContext().allowTF32CuBLAS());
  std::vector<at::Tensor> parameters = model.parameters();
  for (auto& parameter : parameters) parameter.set_requires_grad(true);
  dist::AdamWOptions adamw;
  adamw.lr = 1e-4;
  dist::AdamWTensors update;  // the parameters, their grads (after the first backward), moments
  update.params = parameters;
  for (auto& parameter : parameters) {
    update.exp_avgs.push_back(at::zeros_like(parameter));
    update.exp_avg_sqs.push_back(at::zeros_like(parameter));
  }
  int64_t adamw_steps = 0;
  auto adamw_step = [&](dist::AdamWKernel kernel) {
    if (update.grads.empty())
      for (auto& parameter : parameters) update.grads.push_back(parameter.grad());
    adamw.kernel = kernel;
    dist::adamw_update(update, ++adamw_steps, adamw.lr, adamw);
  };
  auto time_adamw_step = [&](dist::AdamWKernel kernel) {
    synchronize(model.device());
    auto start = std::chrono::steady_clock::now();
    adamw_step(kernel);
    parameters[0].sum().item<float>();
    synchronize(model.device());
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  auto long_options = at::TensorOptions().dtype(at::kLong).device(model.device());
  at::Tensor ids = at::randint(config.vocab_size, {options.batch, options.seq_len + 1}, long_options);
  model::ForwardInput input;
  input.input_ids = ids.narrow(1, 0, options.seq_len);
  at::Tensor targets = ids.narrow(1, 1, options.seq_len).reshape({-1});  // (B*T)

  double forward_backward = 0, step = 0;
  auto run = [&] {
    auto start = std::chrono::steady_clock::now();
    for (auto& parameter : parameters)
      if (parameter.grad().defined()) parameter.mutable_grad().zero_();
    at::Tensor logits = model.forward(input).logits;  // (B, T, V)
    at::Tensor loss = at::cross_entropy_loss(logits.reshape({-1, config.vocab_size}), targets);
    loss.backward();
    loss.item<float>();
    synchronize(model.device());  // .item() already waits on its stream; the clock needs the whole device
    forward_backward = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    step = time_adamw_step(dist::AdamWKernel::automatic);
  };
  run();  // warm-up
  double best = 1e30, best_step = 0;
  for (int repeat = 0; repeat < options.repeats; ++repeat) {
    run();
    if (forward_backward < best) {
      best = forward_backward;
      best_step = step;
    }
  }
  const double tokens = static_cast<double>(options.batch * options.seq_len);
  // Backward costs twice the forward's matmuls.
  const double gflops = 3 * forward_flops_per_token(config, static_cast<double>(options.seq_len)) * tokens / best / 1e9;
  const std::string shape = options.preset + " B=" + std::to_string(options.batch) + " T=" +
                            std::to_string(options.seq_len) + ", best of " + std::to_string(options.repeats);
  report.rows.push_back({"tokens/s (fwd+bwd)", tokens / best, "tok/s", shape});
  report.rows.push_back({"time fwd+bwd", best * 1e3, "ms", ""});
  const dist::AdamWKernel used = dist::resolve_adamw_kernel(dist::AdamWKernel::automatic, model.device());
  report.rows.push_back({"time AdamW step", best_step * 1e3, "ms",
                         std::string(dist::adamw_kernel_name(used)) + ", " + std::to_string(parameters.size()) +
                             " tensors (" + std::string(c10::toString(model.dtype())) + ")"});
  report.rows.push_back({"AdamW step / fwd+bwd", best_step / best, "", "goal <= 0.10 on a GPU"});
  // Each kernel on its own (the gradients of the last backward; best of the repeats).
  for (auto kernel : {dist::AdamWKernel::per_tensor, dist::AdamWKernel::foreach, dist::AdamWKernel::fused}) {
    if (kernel == dist::AdamWKernel::fused && !dist::fused_adamw_available(model.device())) continue;  // 1.13; CPU < 2.4
    double kernel_best = 1e30;
    for (int repeat = 0; repeat < std::max(1, options.repeats); ++repeat)
      kernel_best = std::min(kernel_best, time_adamw_step(kernel));
    report.rows.push_back(
        {std::string("time AdamW step, ") + dist::adamw_kernel_name(kernel), kernel_best * 1e3, "ms", ""});
  }
  report.rows.push_back({"tokens/s (with step)", tokens / (best + best_step), "tok/s", ""});
  report.rows.push_back({"achieved (fwd+bwd)", gflops, "GFLOP/s", "3 x forward FLOPs"});
  report.rows.push_back({"gemm peak (this run)", peak.gflops, "GFLOP/s", peak.note});
  report.rows.push_back({"fraction of peak", fraction_of_peak(gflops, peak.gflops), "", "goal >= 0.5 at T=512"});
  report.rows.push_back({"peak memory (RSS)", peak_memory_mb(), "MB", "VmHWM after reset"});
  return report;
}

}  // namespace nla::bench
