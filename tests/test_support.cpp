#include "test_support.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include "nla/core/fs.hpp"

extern char** environ;

namespace nla::test {

static std::string shell_escape_single(const std::string& text) {
  std::string escaped;
  for (char c : text) escaped += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return escaped;
}

TempDir::TempDir() {
  std::string pattern = nla::fs::join(nla::fs::temp_directory(), "nla-test-XXXXXX");
  if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

TempDir::~TempDir() {
  if (std::getenv("NLA_KEEP_TEST_DIRS")) {  // debugging a fixture: keep it, say where
    std::fprintf(stderr, "NLA_KEEP_TEST_DIRS: kept %s\n", path_.c_str());
    return;
  }
  try {
    nla::fs::remove_all(path_);
  } catch (const std::exception& error) {  // a destructor must not throw; a leftover is harmless
    std::fprintf(stderr, "TempDir: %s\n", error.what());
  }
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
    // Kept: what says where Open MPI is installed (a relocated install, as on the GPU machine,
    // cannot start without it) and the user's transport settings; the job's own identity
    // (jobid, vpid, hnp uri, ...) is what must not leak into a child started here.
    static const std::set<std::string> kept = {
        "OMPI_MCA_rmaps_base_oversubscribe", "OMPI_MCA_btl", "OMPI_MCA_pml",
        "OMPI_MCA_btl_vader_single_copy_mechanism", "OMPI_MCA_ess_singleton_isolated", "OMPI_MCA_mpi_yield_when_idle",
        "OPAL_PREFIX", "OPAL_LIBDIR", "OPAL_PKGLIBDIR", "OPAL_DATADIR", "OPAL_PKGDATADIR", "OPAL_SYSCONFDIR",
        "OPAL_BINDIR", "OPAL_INCLUDEDIR", "PMIX_INSTALL_PREFIX", "PMIX_MCA_mca_base_component_path"};
    bool keep = name.rfind("OMPI_ALLOW_RUN_AS_ROOT", 0) == 0 || kept.count(name) > 0;
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
