// `nla bench NAME`: throughput and memory benchmarks. Each benchmark returns rows
// (metric, value, unit, note); the command prints them as a table and writes JSON.
// Speed goals are checked here, never by timed tests.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace nla::bench {

// One options struct for every benchmark (section [bench]); each uses what it needs.
struct BenchOptions {
  std::string name;                                // which benchmark
  std::string tokenizer = "models/tokenizer.json"; // tokenize
  std::string text;                                // tokenize: input text file ("" = built-in mix)
  int64_t text_bytes = 4 << 20;                    // tokenize: size of the built-in mix
  std::string preset = "small";                    // model benchmarks
  std::string model;                               // model dir instead of a preset
  int64_t batch = 8;
  std::vector<int64_t> batch_sizes;                // generate: each its own rows (empty: {batch})
  int64_t seq_len = 512;
  int64_t new_tokens = 128;
  double temperature = 0;                          // generate: 0 greedy, else sampled (seeded per row)
  int repeats = 3;
  bool reference = true;                           // run the independent reference side by side
  std::string out = "bench.json";
};

struct BenchRow {
  std::string metric;
  double value = 0;
  std::string unit;
  std::string note;
};

struct BenchReport {
  std::string name;
  std::vector<BenchRow> rows;
};

using BenchFunction = BenchReport (*)(const BenchOptions&);

struct BenchEntry {
  const char* name;
  const char* summary;
  BenchFunction function;
};

// The table of benchmarks (src/bench/benchmarks.cpp).
const std::vector<BenchEntry>& benchmarks();

// Fixed-width table on stdout.
std::string format_report(const BenchReport& report);

}  // namespace nla::bench
