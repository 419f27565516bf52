// nla bench NAME: runs one benchmark, prints its table, writes its JSON.
#include <nlohmann/json.hpp>

#include "nla/bench/bench.hpp"
#include "nla/cli/command.hpp"
#include "nla/core/atomic_file.hpp"
#include "nla/core/error.hpp"
#include "nla/core/log.hpp"
#include "nla/core/world.hpp"

namespace nla::cli {

class BenchCommand : public Command {
 public:
  std::string name() const override { return "bench"; }
  std::string summary() const override {
    std::string text = "throughput and memory benchmarks: nla bench NAME, NAME one of:";
    for (const auto& entry : bench::benchmarks()) text += std::string("\n    ") + entry.name + ": " + entry.summary;
    return text;
  }

  void declare(OptionSet& options) override {
    options.add("bench", "name", &bench_.name, "benchmark to run (positional)");
    options.positional("name");
    options.add("bench", "tokenizer", &bench_.tokenizer, "tokenizer.json (tokenize)");
    options.add("bench", "text", &bench_.text, "text file to tokenize (\"\": a built-in mix of prose, code, CJK, numbers)");
    options.add("bench", "text-bytes", &bench_.text_bytes, "bytes of the built-in mix (tokenize)");
    options.add("bench", "preset", &bench_.preset, "model preset for model benchmarks");
    options.add("bench", "model", &bench_.model, "model directory instead of a preset");
    options.add("bench", "batch", &bench_.batch, "batch size");
    options.add("bench", "seq-len", &bench_.seq_len, "sequence length");
    options.add("bench", "new-tokens", &bench_.new_tokens, "new tokens per sequence (generate)");
    options.add("bench", "temperature", &bench_.temperature, "generate: 0 greedy, else sampled at this temperature");
    options.add("bench", "repeats", &bench_.repeats, "timed repetitions (best or mean reported)");
    options.add("bench", "reference", &bench_.reference, "also run the independent reference side by side");
    options.add("bench", "out", &bench_.out, "JSON output file");
  }

  void run(const RunContext& context) override {
    const bench::BenchEntry* entry = nullptr;
    std::string names;
    for (const auto& candidate : bench::benchmarks()) {
      if (bench_.name == candidate.name) entry = &candidate;
      names += std::string(names.empty() ? "" : ", ") + candidate.name;
    }
    NLA_CHECK_INPUT(entry, "option 'name': expected one of ", names, ", got '", bench_.name, "'");
    NLA_CHECK_INPUT(bench_.repeats >= 1, "option 'repeats': expected >= 1, got ", bench_.repeats);
    auto report = entry->function(bench_);
    if (!is_root()) return;
    std::printf("%s", bench::format_report(report).c_str());
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& row : report.rows)
      rows.push_back({{"metric", row.metric}, {"value", row.value}, {"unit", row.unit}, {"note", row.note}});
    nlohmann::json out = {{"benchmark", report.name},
                          {"rows", rows},
                          {"provenance", nlohmann::json::parse(context.provenance_json())}};
    write_file_atomic(bench_.out, out.dump(2) + "\n");
    log_info("wrote %s", bench_.out.c_str());
  }

 private:
  bench::BenchOptions bench_;
};

std::unique_ptr<Command> make_bench_command() { return std::make_unique<BenchCommand>(); }

}  // namespace nla::cli
