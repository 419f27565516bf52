// metrics.jsonl truncation for resumed runs (see metrics_file.hpp).
#include "nla/train/metrics_file.hpp"

#include <nlohmann/json.hpp>

#include <fstream>

#include "nla/core/atomic_file.hpp"
#include "nla/core/fs.hpp"

namespace nla::train {

void truncate_metrics(const std::string& path, int64_t step) {
  if (!fs::exists(path)) return;
  std::ifstream in(path);
  std::string line, kept;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (record.is_discarded()) continue;  // cut by a kill: its step is redone
    if (record.value("step", int64_t{0}) <= step) kept += line + "\n";
  }
  write_file_atomic(path, kept);
}

}  // namespace nla::train
