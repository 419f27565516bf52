// The `nla` binary end to end: usage, --help, --version, exit statuses, and the job-wide
// error policy under the MPI launcher (a failing rank ends the job promptly).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <chrono>

#include "test_support.hpp"

namespace nla::test {

TEST(Cli, UsageAndVersion) {
  auto usage = run_nla("");
  EXPECT_EQ(usage.exit_status, 2);
  EXPECT_NE(usage.out.find("Usage: nla <command>"), std::string::npos) << usage.out;
  auto help = run_nla("--help");
  EXPECT_EQ(help.exit_status, 0);
  EXPECT_NE(help.out.find("bench"), std::string::npos);
  auto version = run_nla("--version");
  EXPECT_EQ(version.exit_status, 0);
  EXPECT_EQ(version.out.rfind("nla 0.", 0), 0u) << version.out;
}

TEST(Cli, UnknownCommandAndOptionExitTwoWithOneLine) {
  auto unknown = run_nla("frobnicate");
  EXPECT_EQ(unknown.exit_status, 2);
  EXPECT_EQ(unknown.err, "nla: unknown command 'frobnicate' (nla --help lists the commands)\n");
  auto bad_option = run_nla("bench --no-such-thing 3");
  EXPECT_EQ(bad_option.exit_status, 2);
  EXPECT_NE(bad_option.err.find("no-such-thing"), std::string::npos) << bad_option.err;
  EXPECT_EQ(std::count(bad_option.err.begin(), bad_option.err.end(), '\n'), 1) << bad_option.err;
  auto bad_value = run_nla("bench nothing");
  EXPECT_EQ(bad_value.exit_status, 2);
  EXPECT_NE(bad_value.err.find("option 'name': expected one of"), std::string::npos) << bad_value.err;
}

TEST(Cli, CommandHelpListsOptionsWithDefaults) {
  auto help = run_nla("bench --help");
  EXPECT_EQ(help.exit_status, 0);
  for (const char* expected : {"--repeats arg (=3)", "--log-level arg (=info)", "--threads arg (=0)", "--config"})
    EXPECT_NE(help.out.find(expected), std::string::npos) << expected << "\n" << help.out;
}

TEST(Cli, ConfigFileErrorsExitTwo) {
  TempDir dir;
  write_text(dir.file("c.ini"), "[bench]\nrepeets = 3\n");
  auto result = run_nla("bench matmul --config " + dir.file("c.ini"));
  EXPECT_EQ(result.exit_status, 2);
  EXPECT_EQ(result.err, "nla bench: " + dir.file("c.ini") + ": unknown key 'repeets' in section [bench]\n");
}

TEST(Cli, BenchWritesJsonWithProvenance) {
  TempDir dir;
  auto result = run_nla("bench matmul --repeats 1 --out " + dir.file("b.json"));
  ASSERT_EQ(result.exit_status, 0) << result.err;
  EXPECT_NE(result.out.find("gemm n=1024"), std::string::npos) << result.out;
  std::string json = read_text(dir.file("b.json"));
  EXPECT_NE(json.find("\"command_line\""), std::string::npos);
  EXPECT_NE(json.find("\"nla_version\""), std::string::npos);
  EXPECT_NE(json.find("repeats = 1  # from cli"), std::string::npos) << json;
}

// main.cpp sets the threading and allocator variables the user has not set (and re-executes
// itself so that libgomp, OpenBLAS and glibc read them); provenance records what ran.
TEST(Cli, RuntimeSettingsAreSetUnlessTheUserChose) {
  TempDir dir;
  auto environment_of = [&](const std::string& prefix) {
    auto result = run_command(prefix + " " + std::string(NLA_BINARY) + " bench matmul --repeats 1 --out " + dir.file("b.json"));
    EXPECT_EQ(result.exit_status, 0) << result.err;
    return nlohmann::json::parse(read_text(dir.file("b.json"))).at("provenance").at("environment");
  };
  auto tuned = environment_of("env -u OMP_WAIT_POLICY -u OPENBLAS_THREAD_TIMEOUT -u GLIBC_TUNABLES");
  EXPECT_EQ(tuned.at("OMP_WAIT_POLICY"), "PASSIVE");
  EXPECT_EQ(tuned.at("OPENBLAS_THREAD_TIMEOUT"), "4");
  EXPECT_NE(tuned.at("GLIBC_TUNABLES").get<std::string>().find("glibc.malloc.mmap_threshold="), std::string::npos);
  auto chosen = environment_of("env -u GLIBC_TUNABLES OMP_WAIT_POLICY=ACTIVE NLA_NO_MALLOC_TUNING=1");
  EXPECT_EQ(chosen.at("OMP_WAIT_POLICY"), "ACTIVE");
  EXPECT_EQ(chosen.at("OPENBLAS_THREAD_TIMEOUT"), "4");
  EXPECT_TRUE(chosen.at("GLIBC_TUNABLES").is_null());
  auto untouched = environment_of("env -u OMP_WAIT_POLICY -u OPENBLAS_THREAD_TIMEOUT NLA_NO_THREAD_TUNING=1");
  EXPECT_TRUE(untouched.at("OMP_WAIT_POLICY").is_null());
  EXPECT_TRUE(untouched.at("OPENBLAS_THREAD_TIMEOUT").is_null());
}

std::string mpi_launch(int ranks) {
  // More ranks than cores is fine for these tests (Open MPI refuses it by default).
  return "OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1 " + std::string(MPIEXEC) + " -n " + std::to_string(ranks) + " " FAILING_NLA;
}

TEST(CliMpi, FailingRankAbortsTheJobPromptly) {
  auto start = std::chrono::steady_clock::now();
  auto result = run_command(mpi_launch(3) + " fail --rank 1 --kind internal");
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_NE(result.exit_status, 0);
  EXPECT_NE(result.err.find("ERROR on rank 1: simulated failure"), std::string::npos) << result.err;
  EXPECT_LT(seconds, 60.0) << "the other ranks must not wait in their barrier";
}

TEST(CliMpi, InputErrorOnOneRankExitsTwo) {
  auto result = run_command(mpi_launch(2) + " fail --rank 1 --kind input");
  EXPECT_EQ(result.exit_status, 2) << result.err;
  EXPECT_NE(result.err.find("ERROR on rank 1: data.jsonl:3: field 'text': expected a string"), std::string::npos)
      << result.err;
}

TEST(CliMpi, UsageErrorOnAllRanksPrintsOnce) {
  auto result = run_command(mpi_launch(3) + " fail --rank nope");
  EXPECT_EQ(result.exit_status, 2) << result.err;
  // Exactly one line from nla (the launcher may add its own notice after it).
  std::string line = "nla fail: command line: the argument ('nope') for option '--rank' is invalid";
  EXPECT_EQ(result.err.rfind(line, 0), 0u) << result.err;
  EXPECT_EQ(result.err.find("ERROR on rank"), std::string::npos) << result.err;
}

TEST(CliMpi, ErrorAgreedByAllRanksIsReportedOnceWithoutAbort) {
  auto result = run_command(mpi_launch(3) + " fail --kind collective-input");
  EXPECT_EQ(result.exit_status, 2) << result.err;
  EXPECT_EQ(result.err.rfind("nla fail: acts.h5: attribute 'format': expected \"nla-activations\"\n", 0), 0u) << result.err;
  EXPECT_EQ(result.err.find("ERROR on rank"), std::string::npos) << result.err;
  EXPECT_EQ(result.err.find("MPI_ABORT"), std::string::npos) << result.err;
}

TEST(CliMpi, SingleProcessFailureSaysRankZero) {
  auto result = run_command(std::string(FAILING_NLA) + " fail --rank 0");
  EXPECT_EQ(result.exit_status, 1);
  EXPECT_EQ(result.err.rfind("ERROR on rank 0: simulated failure [", 0), 0u) << result.err;
  auto input = run_command(std::string(FAILING_NLA) + " fail --rank 0 --kind input");
  EXPECT_EQ(input.exit_status, 2);
  EXPECT_EQ(input.err, "nla fail: data.jsonl:3: field 'text': expected a string\n");
}

}  // namespace nla::test
