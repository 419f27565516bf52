// nla bench memory: per-rank bytes of parameters, gradients and optimizer state with the
// model sharded (FSDP-style) over this job's ranks, against the budget
// 16 * P / N + one gathered unit; both as tensor byte counts and as RSS (a real training
// step, per-block mode, at --batch x --seq-len).
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <fstream>
#include <string>

#include "bench_model_common.hpp"
#include "nla/dist/adamw.hpp"
#include "nla/dist/communicator.hpp"
#include "nla/dist/fsdp.hpp"

namespace nla::bench {

namespace {

// VmRSS of /proc/self/status in MB (0 where /proc is absent).
double current_rss_mb() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // kB
  return 0;
}

constexpr double kMB = 1024.0 * 1024.0;

}  // namespace

BenchReport bench_memory(const BenchOptions& options) {
  BenchReport report{"memory", {}};
  dist::Communicator comm = dist::Communicator::world();
  const int n = comm.size();
  const double rss_start = current_rss_mb();
  dist::FsdpOptions fsdp;
  fsdp.per_block = true;  // the mode whose transient is one gathered unit
  dist::ShardedModel sharded(bench_model(options), comm, fsdp);  // the full model is freed here
  dist::ShardedAdamW optimizer(sharded);
  const auto& config = sharded.config();
  const dist::ShardMemory memory = sharded.memory();
  const double p = static_cast<double>(memory.total_parameters);
  const double state = static_cast<double>(memory.parameters + memory.gradients + optimizer.state_bytes());
  const double budget_state = 16 * p / n;
  const double budget = budget_state + static_cast<double>(memory.largest_unit);

  // RSS: the state as allocated, then the high-water mark of one training step.
  reset_peak_memory();
  const double rss_state = current_rss_mb();
  auto long_options = at::TensorOptions().dtype(at::kLong).device(sharded.device());
  auto generator = at::make_generator<at::CPUGeneratorImpl>(7);
  at::Tensor ids = at::randint(config.vocab_size, {options.batch, options.seq_len + 1}, generator, at::kLong)
                       .to(long_options);  // (B, T + 1), the same on every rank
  model::ForwardInput input;
  input.input_ids = ids.narrow(1, 0, options.seq_len);                   // (B, T)
  at::Tensor targets = ids.narrow(1, 1, options.seq_len).reshape({-1});  // (B*T)
  sharded.forward_backward(input, {}, [&](const model::ForwardOutput& out) {
    return at::cross_entropy_loss(out.logits.reshape({-1, config.vocab_size}), targets);
  });
  sharded.clip_grad_norm(1.0);
  optimizer.step();
  const double rss_peak = peak_memory_mb();

  // The largest figure over the ranks (uneven padding: rank 0 and the last may differ).
  auto worst = [&](double value) { return comm.all_reduce_scalar(value, dist::ReduceOp::max); };
  const std::string where = options.preset + ", " + std::to_string(n) + " rank(s), max over ranks";
  report.rows.push_back({"parameters P", p / 1e6, "M", options.model.empty() ? options.preset : options.model});
  report.rows.push_back({"ranks N", static_cast<double>(n), "", "FSDP group = MPI_COMM_WORLD"});
  report.rows.push_back({"parameter shards", worst(static_cast<double>(memory.parameters)) / kMB, "MB",
                         "fp32 master (+ compute copy if not fp32)"});
  report.rows.push_back({"gradient shards", worst(static_cast<double>(memory.gradients)) / kMB, "MB", "fp32"});
  report.rows.push_back({"optimizer shards", worst(static_cast<double>(optimizer.state_bytes())) / kMB, "MB",
                         "AdamW exp_avg + exp_avg_sq, fp32"});
  report.rows.push_back({"state total", worst(state) / kMB, "MB", where});
  report.rows.push_back({"16 * P / N", budget_state / kMB, "MB", "the budget without a gathered unit"});
  report.rows.push_back({"largest gathered unit", static_cast<double>(memory.largest_unit) / kMB, "MB",
                         "a flat unit in the compute dtype (its grad doubles it during backward)"});
  report.rows.push_back({"16 * P / N + one unit", budget / kMB, "MB", ""});
  report.rows.push_back({"state / (16 * P / N)", worst(state) / budget_state, "x", "1 + padding"});
  report.rows.push_back({"unsharded 16 * P", 16 * p / kMB, "MB", "one rank holding everything"});
  report.rows.push_back({"RSS before the model", worst(rss_start), "MB", "runtime, MPI, LibTorch"});
  report.rows.push_back({"RSS with the shards", worst(rss_state), "MB", "after the full model was freed"});
  report.rows.push_back({"RSS peak in a step", worst(rss_peak), "MB",
                         "per-block, B=" + std::to_string(options.batch) + " T=" + std::to_string(options.seq_len) +
                             " (activations and logits included)"});
  report.rows.push_back({"step transient over state", worst(rss_peak - rss_state), "MB",
                         "gathered units + grads + activations"});
  return report;
}

}  // namespace nla::bench
