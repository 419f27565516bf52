// The table of `nla bench` benchmarks. Each lives in its own bench_<name>.cpp.
#include "nla/bench/bench.hpp"

#include <cstdio>

namespace nla::bench {

// defined in bench_<name>.cpp
BenchReport bench_matmul(const BenchOptions& options);
BenchReport bench_forward(const BenchOptions& options);
BenchReport bench_train_step(const BenchOptions& options);
BenchReport bench_generate(const BenchOptions& options);
BenchReport bench_tokenize(const BenchOptions& options);
BenchReport bench_extract(const BenchOptions& options);
BenchReport bench_memory(const BenchOptions& options);
BenchReport bench_grpo(const BenchOptions& options);
BenchReport bench_eval(const BenchOptions& options);
BenchReport bench_sft(const BenchOptions& options);

const std::vector<BenchEntry>& benchmarks() {
  static const std::vector<BenchEntry> table = {
      {"matmul", "matrix-multiply peaks of this machine, the yardstick of the model benchmarks (CPU: fp32; CUDA: bf16, tf32, fp32 at n=8192)", bench_matmul},
      {"forward", "inference forward: tokens/s, GFLOP/s as a fraction of the GEMM peak, peak memory", bench_forward},
      {"train-step", "forward + cross-entropy + backward + AdamW: tokens/s, fraction of peak, memory", bench_train_step},
      {"generate", "batched greedy KV-cache generation (use --batch 32 --seq-len 32 --new-tokens 128)", bench_generate},
      {"extract", "extraction: tokens/s through the truncated model, store MB/s vs the disk's dd rate", bench_extract},
      {"memory", "per-rank bytes of sharded parameters, gradients, AdamW state vs 16 P / N + one unit; RSS of a step", bench_memory},
      {"sft", "AV SFT steps sharded over the ranks: samples/s, GFLOP/s per rank vs the GEMM peak, communication share (mpirun -n 1 and -n 2; --batch 8 --new-tokens 48)", bench_sft},
      {"eval", "nla eval sweep: samples/s at (layers, samples) = (2,16), (4,16), (4,32); use --preset tiny --new-tokens 32", bench_eval},
      {"grpo", "one GRPO step by phase (generate, score, update, sync), rollout tokens/s, weight-sync GB/s vs a plain broadcast (use --preset tiny --batch 4 --new-tokens 32; mpirun -n 2 for sync)", bench_grpo},
      {"tokenize", "tokens/s of the tokenizer on one core, beside Hugging Face tokenizers on the same text", bench_tokenize},
  };
  return table;
}

std::string format_report(const BenchReport& report) {
  std::string text = "benchmark: " + report.name + "\n";
  char line[512];
  std::snprintf(line, sizeof line, "  %-34s %14s  %-10s %s\n", "metric", "value", "unit", "note");
  text += line;
  for (const auto& row : report.rows) {
    std::snprintf(line, sizeof line, "  %-34s %14.4g  %-10s %s\n", row.metric.c_str(), row.value, row.unit.c_str(),
                  row.note.c_str());
    text += line;
  }
  return text;
}

}  // namespace nla::bench
