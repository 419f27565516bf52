#include "test_support.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace nla::test {

static std::string shell_escape_single(const std::string& text) {
  std::string escaped;
  for (char c : text) escaped += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return escaped;
}

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "nla-test-XXXXXX").string();
  if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

TempDir::~TempDir() {
  if (std::getenv("NLA_KEEP_TEST_DIRS")) {  // debugging a fixture: keep it, say where
    std::fprintf(stderr, "NLA_KEEP_TEST_DIRS: kept %s\n", path_.c_str());
    return;
  }
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

// The test binary is itself an MPI process (a singleton); its OMPI_/PMIX_ variables would
// make a child mpiexec or nla believe it is part of this job. Children get a clean view.
static std::string without_mpi_environment() {
  std::string prefix = "env";
  for (char** entry = environ; *entry; ++entry) {
    std::string variable = *entry;
    std::string name = variable.substr(0, variable.find('='));
    bool mpi = name.rfind("OMPI_", 0) == 0 || name.rfind("PMIX_", 0) == 0 || name.rfind("ORTE_", 0) == 0 ||
               name.rfind("OPAL_", 0) == 0;
    bool keep = name.rfind("OMPI_ALLOW_RUN_AS_ROOT", 0) == 0 || name == "OMPI_MCA_rmaps_base_oversubscribe";
    if (mpi && !keep) prefix += " -u " + name;
  }
  return prefix;
}

CommandResult run_command(const std::string& command_line) {
  TempDir dir;
  std::string full = without_mpi_environment() + " sh -c '" + shell_escape_single(command_line) + "'";
  full += " >" + dir.file("out") + " 2>" + dir.file("err");
  int status = std::system(full.c_str());
  CommandResult result;
  result.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.out = read_text(dir.file("out"));
  result.err = read_text(dir.file("err"));
  return result;
}

CommandResult run_nla(const std::string& arguments) { return run_command(std::string(NLA_BINARY) + " " + arguments); }

std::string test_data(const std::string& relative) { return std::string(NLA_TEST_DATA) + "/" + relative; }
std::string repo_path(const std::string& relative) { return std::string(NLA_REPO_ROOT) + "/" + relative; }

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::vector<nlohmann::json> records;
  std::istringstream in(read_text(path));
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) records.push_back(nlohmann::json::parse(line));
  return records;
}

}  // namespace nla::test
