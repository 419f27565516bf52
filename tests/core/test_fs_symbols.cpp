// nla and its tests reference no std::filesystem symbol, so a libtorch that exports its own
// copies (PyTorch's pip wheels, pytorch/pytorch#133437) cannot capture their calls. On a GPU
// machine nla crashed (SIGSEGV, call to address 0) in std::filesystem::remove_all at its
// first checkpoint rotation, its calls bound to the wheel's copy.
//
// libfs_interposer.so (generated from this machine's libstdc++, fs_interposer.cmake) plays
// the wheel: every std::filesystem function libstdc++ exports, each a trap that names the
// symbol and exits 99. Preloaded objects come before an executable's own libraries in symbol
// lookup, as libtorch.so came before libstdc++ on nla's link line.
//   1. No executable of the build has a std::filesystem symbol in its dynamic symbol table.
//   2. The real nla, with the trap preloaded, initialises a model, extracts, labels and
//      trains with a trainer_state saved (and the previous one removed) every step.
//   3. The trap does catch a program that calls std::filesystem::remove_all, so 1 and 2
//      would fail on a binary that still used std::filesystem (nla before nla::fs did).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "nla/core/fs.hpp"
#include "test_support.hpp"

namespace nla::test {
namespace {

constexpr const char* kTrapMark = "bound to the interposer";
constexpr const char* kLoadedMark = "fs interposer loaded";

std::string quoted(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Empty when the tools a check needs are here; else why it cannot run.
std::string nm_missing() {
  const std::string nm = NLA_NM;
  return nm.empty() || nm.find("NOTFOUND") != std::string::npos ? "nm not found at configure time" : "";
}
std::string interposer_missing() {
  if (auto why = nm_missing(); !why.empty()) return why;
  return std::string(NLA_FS_INTERPOSER).empty()
             ? "libfs_interposer.so not configured (libstdc++.so.6 not found at configure time)"
             : "";
}

// The dynamic symbols of `binary` that belong to std::filesystem ("U name@version" lines),
// or a failure added to the test when nm cannot read it.
std::vector<std::string> filesystem_symbols(const std::string& binary) {
  auto listing = run_command(std::string(NLA_NM) + " -D " + quoted(binary));
  if (listing.exit_status != 0) {
    ADD_FAILURE() << "nm -D " << binary << " failed: " << listing.err;
    return {};
  }
  std::vector<std::string> found;
  std::istringstream lines(listing.out);
  for (std::string line; std::getline(lines, line);) {
    if (line.find("St10filesystem") == std::string::npos) continue;
    line.erase(0, line.find_first_not_of(' '));
    found.push_back(line);
  }
  return found;
}

// Every executable target under tests/ (written by tests/core/CMakeLists.txt at generate time).
std::vector<std::string> test_executables() {
  std::ifstream in(NLA_TEST_EXECUTABLE_LIST);
  std::vector<std::string> paths;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) paths.push_back(line);
  return paths;
}

TEST(FsSymbols, NoExecutableReferencesStdFilesystem) {
  if (auto why = nm_missing(); !why.empty()) GTEST_SKIP() << why;
  std::vector<std::string> binaries = test_executables();
  // The list holds this test itself: a list that lost its entries must not pass for empty.
  bool lists_itself = false;
  for (const auto& path : binaries) lists_itself = lists_itself || fs::filename(path) == "test_fs_symbols";
  ASSERT_TRUE(lists_itself) << NLA_TEST_EXECUTABLE_LIST << " does not list test_fs_symbols (" << binaries.size()
                            << " entries)";
  binaries.insert(binaries.begin(), NLA_BINARY);

  int checked = 0;
  for (const auto& binary : binaries) {
    if (!fs::exists(binary)) {
      ADD_FAILURE() << binary << ": not built, so not checked (build every target before this test)";
      continue;
    }
    std::string offending;
    for (const auto& symbol : filesystem_symbols(binary)) offending += "\n  " + symbol;
    EXPECT_TRUE(offending.empty()) << binary << " has std::filesystem in its dynamic symbols (use nla::fs):"
                                   << offending;
    ++checked;
  }
  std::printf("%d executables checked for std::filesystem symbols\n", checked);
}

TEST(FsSymbols, InterposerTrapsAProgramThatCallsStdFilesystem) {
  if (auto why = interposer_missing(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  const std::string program = std::string(NLA_CALLS_STD_FILESYSTEM) + " " + quoted(dir.file("missing"));
  auto plain = run_command(program);
  ASSERT_EQ(plain.exit_status, 0) << "without the preload the program must work: " << plain.err;
  // The static check sees this program's references.
  EXPECT_FALSE(filesystem_symbols(NLA_CALLS_STD_FILESYSTEM).empty()) << NLA_CALLS_STD_FILESYSTEM;

  auto trapped = run_command("NLA_FS_INTERPOSER_ANNOUNCE=1 LD_PRELOAD=" + quoted(NLA_FS_INTERPOSER) + " " + program);
  EXPECT_EQ(trapped.exit_status, 99) << trapped.out << trapped.err;
  EXPECT_NE(trapped.err.find(kLoadedMark), std::string::npos) << trapped.err;
  EXPECT_NE(trapped.err.find("std::filesystem symbol _ZNSt10filesystem"), std::string::npos) << trapped.err;
  EXPECT_NE(trapped.err.find(kTrapMark), std::string::npos) << trapped.err;
  EXPECT_EQ(trapped.out.find("removed"), std::string::npos) << "the real remove_all ran: " << trapped.out;
}

TEST(FsSymbols, NlaRotatesCheckpointsWithTheInterposerPreloaded) {
  if (auto why = interposer_missing(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  auto nla_preloaded = [&](const std::string& step, const std::string& arguments) {
    auto result = run_command("NLA_FS_INTERPOSER_ANNOUNCE=1 LD_PRELOAD=" + quoted(NLA_FS_INTERPOSER) + " " +
                              NLA_BINARY + " " + arguments);
    EXPECT_NE(result.err.find(kLoadedMark), std::string::npos) << step << ": the preload did not take:\n" << result.err;
    EXPECT_EQ(result.err.find(kTrapMark), std::string::npos) << step << " called std::filesystem:\n" << result.err;
    EXPECT_EQ(result.exit_status, 0) << step << ":\n" << result.err;
    return result.exit_status == 0;
  };
  const std::string model = dir.file("model"), store = dir.file("acts.h5"), run = dir.file("run");
  ASSERT_TRUE(nla_preloaded("init-model", "init-model --preset tiny --seed 3 --tokenizer " +
                                              repo_path("models/tokenizer.json") + " --out " + model));
  ASSERT_TRUE(nla_preloaded("extract", "extract --model " + model + " --corpus " + repo_path("data/corpus") +
                                           " --max-docs 40 --doc-stride 4 --layers 1 --positions-per-doc 2"
                                           " --min-position 8 --max-tokens 48 --batch-docs 8 --seed 0 --threads 2"
                                           " --out " + store));
  ASSERT_TRUE(nla_preloaded("label", "label --store " + store));
  // save-every 1: from step 2 on, each save renames the previous trainer_state/ aside and
  // removes it (remove_all: where nla crashed).
  ASSERT_TRUE(nla_preloaded("train-ar", "train-ar --store " + store + " --layer 1 --model " + model + " --out " + run +
                                            " --steps 4 --batch 4 --save-every 1 --eval-every 0"
                                            " --max-eval-samples 4 --max-tokens 32 --seed 1 --threads 2"));

  const auto state = nlohmann::json::parse(read_text(run + "/trainer_state/state.json"));
  EXPECT_EQ(state["step"], 4);
  EXPECT_FALSE(fs::exists(run + "/trainer_state.old")) << "the rotated state must be removed";
  EXPECT_FALSE(fs::exists(run + "/trainer_state.tmp"));
  EXPECT_TRUE(fs::exists(run + "/ar/nla_meta.yaml"));
}

}  // namespace
}  // namespace nla::test
