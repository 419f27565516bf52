// nla_core: error type and checked-call macros, formatting, progress line, atomic files,
// stop signals.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <mpi.h>

#include <csignal>

#include "nla/core/atomic_file.hpp"
#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/core/log.hpp"
#include "nla/core/progress.hpp"
#include "nla/core/stop_signal.hpp"
#include "test_support.hpp"

namespace nla {

TEST(Error, CarriesMessageAndSourceLocation) {
  try {
    NLA_INPUT_ERROR("data.jsonl:3: field 'text': expected a string, got ", 42);
    FAIL() << "no throw";
  } catch (const InputError& error) {
    EXPECT_STREQ(error.what(), "data.jsonl:3: field 'text': expected a string, got 42");
    EXPECT_NE(error.where().find("tests/core/test_core.cpp:"), std::string::npos) << error.where();
  }
}

TEST(Error, CheckThrowsInternalErrorNotInputError) {
  EXPECT_THROW(NLA_CHECK(1 + 1 == 3, "arithmetic"), Error);
  try {
    NLA_CHECK(false, "x=", 7);
  } catch (const InputError&) {
    FAIL() << "NLA_CHECK must not raise an input error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("x=7"), std::string::npos);
  }
  EXPECT_NO_THROW(NLA_CHECK_INPUT(true, "never"));
}

TEST(Error, MpiCheckTurnsReturnCodeIntoError) {
  int size = 0;
  EXPECT_NO_THROW(NLA_CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &size)));
  // MpiSession set MPI_ERRORS_RETURN, so a bad call comes back as a code.
  try {
    NLA_CHECK_MPI(MPI_Comm_size(MPI_COMM_NULL, &size));
    FAIL() << "no throw";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("MPI_Comm_size"), std::string::npos) << error.what();
  }
}

TEST(Error, H5CheckPassesValuesAndThrowsOnFailure) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // no HDF5 stack dump on stderr
  hid_t space = NLA_CHECK_H5(H5Screate(H5S_SCALAR));
  EXPECT_GE(space, 0);
  NLA_CHECK_H5(H5Sclose(space));
  try {
    NLA_CHECK_H5(H5Fopen("/nonexistent/nla.h5", H5F_ACC_RDONLY, H5P_DEFAULT));
    FAIL() << "no throw";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("H5Fopen"), std::string::npos) << error.what();
  }
}

TEST(Format, DurationsAndCounts) {
  EXPECT_EQ(format_duration(0.412), "412 ms");
  EXPECT_EQ(format_duration(12.34), "12.3 s");
  EXPECT_EQ(format_duration(125), "2m05s");
  EXPECT_EQ(format_duration(7380), "2h03m");
  EXPECT_EQ(format_count(18200), "18.2k");
  EXPECT_EQ(format_count(1050000), "1.05M");
  EXPECT_EQ(format_count(42), "42");
  EXPECT_EQ(parse_log_level("warn"), LogLevel::warn);
  EXPECT_THROW(parse_log_level("loud"), InputError);
}

TEST(Progress, LineShowsDoneTotalRateAndEta) {
  Progress progress("extract", 200, "docs");
  progress.set(50);
  std::string line = progress.line("layer 3");
  EXPECT_NE(line.find("extract  50/200 (25%)"), std::string::npos) << line;
  EXPECT_NE(line.find("docs/s"), std::string::npos) << line;
  EXPECT_NE(line.find("ETA"), std::string::npos) << line;
  EXPECT_NE(line.find("| layer 3"), std::string::npos) << line;
  progress.finish();
  Progress unknown("scan", 0, "lines");
  unknown.set(7);
  EXPECT_EQ(unknown.line().find("ETA"), std::string::npos);
  EXPECT_EQ(unknown.line().find('%'), std::string::npos);
}

TEST(AtomicFile, InvisibleUntilCommitAndRemovedWithoutIt) {
  test::TempDir dir;
  std::string path = dir.file("out.txt");
  {
    AtomicFile file(path);
    file.stream() << "partial";
    EXPECT_FALSE(fs::exists(path));
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(fs::is_empty_directory(dir.path()));  // the temporary is gone too
  {
    AtomicFile file(path);
    file.stream() << "complete";
    file.commit();
  }
  EXPECT_EQ(read_file(path), "complete");
  EXPECT_THROW(read_file(dir.file("missing")), InputError);
  EXPECT_THROW(AtomicFile(dir.file("no/such/dir/x")), InputError);
}

TEST(StopSignals, RecordTheFirstSignalAndRestoreTheHandlers) {
  {
    StopSignals stop;
    EXPECT_EQ(stop.agreed(MPI_COMM_WORLD), 0);
    std::raise(SIGUSR1);  // recorded, not fatal
    std::raise(SIGTERM);  // the first one stays the one reported
    EXPECT_EQ(stop.agreed(MPI_COMM_WORLD), SIGUSR1);
  }
  {
    StopSignals again;  // a new run starts clean
    EXPECT_EQ(again.agreed(MPI_COMM_WORLD), 0);
  }
  struct sigaction now = {};
  ASSERT_EQ(sigaction(SIGTERM, nullptr, &now), 0);
  EXPECT_EQ(now.sa_handler, SIG_DFL);  // the test binary's own disposition is back
  EXPECT_EQ(signal_name(SIGTERM), "SIGTERM");
  EXPECT_EQ(signal_from_name("TERM", "kill-signal"), SIGTERM);
  EXPECT_EQ(signal_from_name("SIGUSR1", "kill-signal"), SIGUSR1);
  EXPECT_THROW(signal_from_name("HUP", "kill-signal"), InputError);
  StoppedBySignal stopped(SIGTERM, "stopped");
  EXPECT_EQ(stopped.exit_status(), 143);
}

}  // namespace nla
