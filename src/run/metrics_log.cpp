// JSON-lines run logs (see metrics_log.hpp).
#include "nla/run/metrics_log.hpp"

#include "nla/core/atomic_file.hpp"
#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/core/world.hpp"

namespace nla::run {

MetricsLog::MetricsLog(std::string path, std::optional<int64_t> resume_step, MPI_Comm comm) : path_(std::move(path)) {
  run_on_root(comm, [&] {
    if (resume_step) truncate_metrics(path_, *resume_step);
    else if (fs::exists(path_)) fs::remove(path_);
    out_.open(path_, std::ios::app);
    NLA_CHECK_INPUT(out_.good(), path_, ": cannot be written");
  });
}

void MetricsLog::write(const nlohmann::json& record) {
  if (!out_.is_open()) return;
  out_ << record.dump() << "\n" << std::flush;
  NLA_CHECK(out_.good(), path_, ": cannot be written");
}

void MetricsLog::flush() {
  if (out_.is_open()) out_.flush();
}

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

}  // namespace nla::run
