// The table of `nla bench` benchmarks. Each lives in its own bench_<name>.cpp.
#include "nla/bench/bench.hpp"

#include <cstdio>

namespace nla::bench {

// defined in bench_<name>.cpp
BenchReport bench_matmul(const BenchOptions& options);
BenchReport bench_tokenize(const BenchOptions& options);

const std::vector<BenchEntry>& benchmarks() {
  static const std::vector<BenchEntry> table = {
      {"matmul", "fp32 matrix-multiply peak of this machine (the yardstick of the model benchmarks)", bench_matmul},
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
