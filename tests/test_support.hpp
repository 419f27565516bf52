// Helpers for tests: paths, temporary directories, running the nla binary.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <string>
#include <vector>

namespace nla::test {

// A fresh directory under the build's temp area, removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct CommandResult {
  int exit_status = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

// Runs a shell command line, capturing stdout and stderr separately.
CommandResult run_command(const std::string& command_line);
// Runs the built `nla` binary with the given arguments (shell syntax).
CommandResult run_nla(const std::string& arguments);

std::string test_data(const std::string& relative);  // tests/data/<relative>
std::string repo_path(const std::string& relative);  // <repo>/<relative>
void write_text(const std::string& path, const std::string& text);
std::string read_text(const std::string& path);
// The records of a JSONL file (metrics.jsonl, nla tokenize output), empty lines skipped.
std::vector<nlohmann::json> read_jsonl(const std::string& path);

}  // namespace nla::test
