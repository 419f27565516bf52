// nla bench sft: AV SFT steps (the heavier of the two SFTs: the full model, logits over
// the answer window) sharded over this job's ranks: samples/s, achieved FLOP/s per rank
// against the GEMM peak measured in the same run, and the share of a step spent in
// communication. Run it on 1 and on 2 ranks (`mpirun -n 2 nla bench sft`) to compare.
//
// Communication share: after the timed steps, the step's collectives are replayed alone on
// buffers of the same sizes (gather-all mode: one all-gather and one reduce-scatter per
// unit, plus the loss and gradient-norm all-reduces), and their time is divided by the
// step time. Computation and communication do not overlap in this implementation, so the
// sum is the step.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <chrono>

#include "bench_model_common.hpp"
#include "device_peak.hpp"
#include "nla/core/timing.hpp"  // defines: seconds_since
#include "nla/dist/adamw.hpp"
#include "nla/dist/communicator.hpp"
#include "nla/autoencoder/prompts.hpp"
#include "nla/tokenizer/tokenizer.hpp"
#include "nla/autoencoder/sharded.hpp"
#include "nla/core/error.hpp"
#include "nla/store/activation_store.hpp"

namespace nla::bench {

namespace {

// Matmul FLOPs of forward + backward (3x forward) of one row: the blocks on every token of
// the prompt + answer, the LM head on the answer window only.
double row_flops(const model::Qwen2Config& c, int64_t tokens, int64_t answer) {
  const double head_dim = static_cast<double>(c.hidden_size / c.num_attention_heads);
  const double kv = static_cast<double>(c.num_key_value_heads) * head_dim;
  const double hidden = static_cast<double>(c.hidden_size), inter = static_cast<double>(c.intermediate_size);
  const double block_weights = hidden * hidden * 2 + hidden * kv * 2 + 3 * hidden * inter;
  const double per_token = 2 * block_weights * static_cast<double>(c.num_hidden_layers) +
                           4 * static_cast<double>(c.num_hidden_layers) * static_cast<double>(tokens) * hidden;
  const double head = 2 * static_cast<double>(c.vocab_size) * hidden * static_cast<double>(answer);
  return 3 * (per_token * static_cast<double>(tokens) + head);
}

}  // namespace

BenchReport bench_sft(const BenchOptions& options) {
  BenchReport report{"sft", {}};
  dist::Communicator comm = dist::Communicator::world();
  const int n = comm.size();
  const GemmPeaks peaks = measure_gemm_peaks(options, bench_device(options));
  auto tokenizer = tokenizer::Tokenizer::from_file(options.tokenizer);
  const auto prompt = autoencoder::av_prompt(tokenizer);
  autoencoder::ShardedVerbalizer av(bench_model(options), comm);
  dist::ShardedAdamW optimizer(av.sharded());
  const auto& config = av.sharded().config();
  const c10::Device device = av.sharded().device();
  const GemmPeak peak = gemm_peak_for(peaks, av.sharded().compute_dtype(), at::globalContext().allowTF32CuBLAS());

  // Every rank draws the same global batch and takes its share: batch rows of random
  // activations and random answers of new_tokens tokens (the step's cost does not depend
  // on the token values).
  const int64_t global = std::max<int64_t>(options.batch, n), answer = std::max<int64_t>(2, options.new_tokens);
  const int64_t mine = global / n + (comm.rank() < global % n ? 1 : 0);
  auto generator = at::make_generator<at::CPUGeneratorImpl>(3 + static_cast<uint64_t>(comm.rank()));
  auto acts = at::randn({mine, config.hidden_size}, generator, at::kFloat);                         // (b, d)
  auto ids = at::randint(1000, 100000, {mine, answer}, generator, at::kLong);                       // (b, A)
  std::vector<std::vector<int64_t>> answers(static_cast<size_t>(mine));
  for (int64_t r = 0; r < mine; ++r) answers[static_cast<size_t>(r)] = std::vector<int64_t>(ids[r].data_ptr<int64_t>(), ids[r].data_ptr<int64_t>() + answer);
  auto batch = autoencoder::make_av_batch(prompt, acts, answers, 150.0, av.sharded().device(), av.sharded().compute_dtype());
  const double scale = 1.0 / static_cast<double>(global * answer);

  auto step = [&] {
    av.sharded().zero_grad();
    auto per_row = av.accumulate_sft_gradients(batch, scale);
    comm.all_reduce_scalar(per_row.select(1, 0).sum().item<double>());
    av.sharded().clip_grad_norm(1.0);
    optimizer.step(1e-5);
  };
  step();  // warm-up: allocations, first-touch pages
  synchronize(device);
  comm.barrier();
  const int repeats = std::max(1, options.repeats);
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < repeats; ++i) step();
  synchronize(device);  // the last optimizer step's kernels
  comm.barrier();
  const double step_s = seconds_since(start) / repeats;

  // The collectives of one step, alone.
  auto& units = av.sharded().units();
  comm.barrier();
  start = std::chrono::steady_clock::now();
  for (int i = 0; i < repeats; ++i) {
    for (auto& unit : units) {
      at::Tensor full = at::empty({unit.padded_numel}, unit.compute.options());
      comm.all_gather(unit.compute, full);
      at::Tensor part = at::empty({unit.shard_numel}, unit.grad.options());
      comm.reduce_scatter(full.to(at::kFloat), part);
    }
    comm.all_reduce_scalar(1.0);
    comm.all_reduce_scalar(1.0);
  }
  synchronize(device);  // NCCL collectives are queued on the device
  comm.barrier();
  const double comm_s = seconds_since(start) / repeats;

  const int64_t tokens = static_cast<int64_t>(prompt.ids.size()) + answer;
  const double flops_rank = row_flops(config, tokens, answer) * static_cast<double>(mine);
  const double gflops_rank = comm.all_reduce_scalar(flops_rank / step_s / 1e9, dist::ReduceOp::max);
  int64_t bytes = 0;
  for (auto& unit : units) bytes += unit.padded_numel * static_cast<int64_t>(unit.compute.element_size());
  const std::string shape = options.preset + ", B=" + std::to_string(global) + " rows of " + std::to_string(tokens) +
                            " tokens (prompt " + std::to_string(prompt.ids.size()) + " + answer " +
                            std::to_string(answer) + ")";
  report.rows.push_back({"ranks", static_cast<double>(n), "", "FSDP group = MPI_COMM_WORLD, gather-all mode"});
  report.rows.push_back({"step time", step_s * 1e3, "ms", shape});
  report.rows.push_back({"samples/s", static_cast<double>(global) / step_s, "rows/s", "whole job"});
  report.rows.push_back({"achieved GFLOP/s per rank", gflops_rank, "GFLOP/s",
                         "3 x forward matmuls; the LM head on the answer window only"});
  report.rows.push_back({"gemm peak (this run)", peak.gflops, "GFLOP/s", peak.note + ", one rank"});
  report.rows.push_back({"fraction of peak per rank", fraction_of_peak(gflops_rank, peak.gflops), "",
                         device.is_cuda() ? "" : "ranks share the node's cores"});
  report.rows.push_back({"communication per step", comm_s * 1e3, "ms",
                         "all-gather + reduce-scatter of every unit (" + std::to_string(bytes >> 20) + " MB), replayed alone"});
  report.rows.push_back({"communication share", comm_s / step_s, "", "of the step"});
  // The finite check every store read does (store::first_non_finite), on one step's rows.
  std::vector<float> step_rows(static_cast<size_t>(global * config.hidden_size), 1.0f);
  double check_s = 1e30;
  for (int repeat = 0; repeat < std::max(3, options.repeats); ++repeat) {
    auto check_start = std::chrono::steady_clock::now();
    NLA_CHECK(store::first_non_finite(step_rows.data(), step_rows.size()) < 0, "bench: finite rows");
    check_s = std::min(check_s, seconds_since(check_start));
  }
  report.rows.push_back({"finite check of the step's rows", check_s * 1e3, "ms",
                         std::to_string(global) + " x " + std::to_string(config.hidden_size) + " floats, best of " +
                             std::to_string(std::max(3, options.repeats))});
  report.rows.push_back({"finite check share", check_s / step_s, "", "of the step (goal < 0.01)"});
  return report;
}

}  // namespace nla::bench
