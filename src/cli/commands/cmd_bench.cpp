// nla bench NAME: runs one benchmark, prints its table, writes its JSON.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <string>
#include <vector>

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
    options.add("bench", "batch", &bench_.batch, "batch size (generate: one size instead of --batch-sizes)");
    options.add("bench", "batch-sizes", &batch_sizes_, "generate: comma-separated batch sizes, each timed on its own");
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
    if (bench_.name == "generate") bench_.batch_sizes = generate_batch_sizes(context);
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
  // --batch-sizes, or --batch alone when only it was given.
  std::vector<int64_t> generate_batch_sizes(const RunContext& context) const {
    const bool batch_given = context.given("batch"), sizes_given = context.given("batch-sizes");
    NLA_CHECK_INPUT(!(batch_given && sizes_given), "options 'batch' and 'batch-sizes': expected one of them, got both");
    if (batch_given) {
      NLA_CHECK_INPUT(bench_.batch >= 1, "option 'batch': expected >= 1, got ", bench_.batch);
      return {bench_.batch};
    }
    std::vector<int64_t> sizes;
    size_t begin = 0;
    while (begin <= batch_sizes_.size()) {
      const size_t comma = std::min(batch_sizes_.find(',', begin), batch_sizes_.size());
      const std::string item = batch_sizes_.substr(begin, comma - begin);
      size_t used = 0;
      long long value = 0;
      try {
        value = std::stoll(item, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      NLA_CHECK_INPUT(used == item.size() && used > 0 && value >= 1,
                      "option 'batch-sizes': expected comma-separated integers >= 1, got '", batch_sizes_, "'");
      sizes.push_back(value);
      begin = comma + 1;
    }
    return sizes;
  }

  bench::BenchOptions bench_;
  std::string batch_sizes_ = "1,32,128";
};

std::unique_ptr<Command> make_bench_command() { return std::make_unique<BenchCommand>(); }

}  // namespace nla::cli
