// The run layer (src/run/) on one rank: what a fingerprint records and accepts (states
// written before a setting existed included), the run logs' truncation on resume, directory
// publishing, temp-then-rename outputs, and the step clock's phases.
#include <gtest/gtest.h>
#include <mpi.h>

#include <stdexcept>
#include <string>

#include "nla/core/atomic_file.hpp"
#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/core/progress.hpp"
#include "nla/run/fingerprint.hpp"
#include "nla/run/metrics_log.hpp"
#include "nla/run/step_clock.hpp"
#include "nla/run/trainer_state.hpp"
#include "test_support.hpp"

namespace nla::test {
namespace {

run::Fingerprint sft_like(bool freeze, const std::string& target) {
  run::Fingerprint fingerprint;
  fingerprint.set("command", "train-ar").set("seed", 1).set("batch", 16);
  fingerprint.set_since("freeze_embeddings", freeze, false);
  fingerprint.set_since("ar_target", target, "normalized", run::Fingerprint::Record::always);
  return fingerprint;
}

TEST(Fingerprint, RecordsLegacySettingsOnlyWhenAskedAndMatchesStatesWithoutThem) {
  const auto plain = sft_like(false, "normalized");
  EXPECT_EQ(plain.json(), (nlohmann::json{{"command", "train-ar"}, {"seed", 1}, {"batch", 16}, {"ar_target", "normalized"}}));
  EXPECT_EQ(sft_like(true, "normalized").json().at("freeze_embeddings"), true);
  EXPECT_TRUE(plain.matches(plain.json()));
  // A state written before freeze_embeddings and ar_target existed: their legacy values.
  const nlohmann::json old_state = {{"command", "train-ar"}, {"seed", 1}, {"batch", 16}};
  EXPECT_TRUE(plain.matches(old_state));
  EXPECT_FALSE(sft_like(true, "normalized").matches(old_state));
  EXPECT_FALSE(sft_like(false, "raw").matches(old_state));
  // A recorded setting at its legacy value still matches.
  EXPECT_TRUE(plain.matches({{"command", "train-ar"}, {"seed", 1}, {"batch", 16}, {"freeze_embeddings", false}}));
  // A different value, a missing required key, a setting this run does not know.
  EXPECT_FALSE(plain.matches({{"command", "train-ar"}, {"seed", 2}, {"batch", 16}}));
  EXPECT_FALSE(plain.matches({{"command", "train-ar"}, {"batch", 16}}));
  EXPECT_FALSE(plain.matches({{"command", "train-ar"}, {"seed", 1}, {"batch", 16}, {"layer", 3}}));
  EXPECT_FALSE(plain.matches(nlohmann::json::array()));
}

TEST(Fingerprint, MismatchIsOneInputErrorNamingTheStateAndTheSettings) {
  const auto frozen = sft_like(true, "raw");
  try {
    frozen.check({{"command", "train-ar"}, {"seed", 1}, {"batch", 16}}, "run/trainer_state/state.json");
    FAIL() << "expected an InputError";
  } catch (const InputError& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("run/trainer_state/state.json: written by a run with {"), std::string::npos) << message;
    EXPECT_NE(message.find("expected command train-ar, seed 1, batch 16, freeze_embeddings true, ar_target raw to "
                           "resume (or use a new 'out')"),
              std::string::npos)
        << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
  EXPECT_NO_THROW(frozen.check(frozen.json(), "x"));
}

TEST(Fingerprint, PathsAreAbsoluteWithTheOldTrailingSlash) {
  const std::string cwd = fs::absolute(".");
  EXPECT_EQ(run::fingerprint_path("a/b"), cwd + "/a/b");
  EXPECT_EQ(run::fingerprint_path("a/b/"), cwd + "/a/b/");
  EXPECT_EQ(run::fingerprint_path("/x/./y/."), "/x/y/");
}

TEST(MetricsLog, FreshRunStartsEmptyAndResumeKeepsTheStepsDone) {
  TempDir dir;
  const std::string path = dir.file("metrics.jsonl");
  write_text(path, "{\"step\": 0}\n{\"step\": 1}\n{\"step\": 2}\n{\"step\": 3, \"cut\n");
  {
    run::MetricsLog log(path, int64_t{1}, MPI_COMM_WORLD);  // resumed after step 1
    log.write({{"step", 2}, {"loss", 0.5}});
  }
  auto records = read_jsonl(path);
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[0].at("step"), 0);
  EXPECT_EQ(records[1].at("step"), 1);
  EXPECT_EQ(records[2], (nlohmann::json{{"step", 2}, {"loss", 0.5}}));
  {
    run::MetricsLog log(path, std::nullopt, MPI_COMM_WORLD);  // a fresh run
    log.write({{"step", 1}});
  }
  records = read_jsonl(path);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].at("step"), 1);
  EXPECT_THROW(run::MetricsLog(dir.file("missing/metrics.jsonl"), std::nullopt, MPI_COMM_WORLD), InputError);
}

TEST(Publishing, ReplaceDirectoryLeavesOnlyTheNewOne) {
  TempDir dir;
  fs::create_directories(dir.file("av"));
  write_text(dir.file("av/old.txt"), "old");
  fs::create_directories(dir.file("av.tmp"));
  write_text(dir.file("av.tmp/new.txt"), "new");
  run::replace_directory(dir.file("av.tmp"), dir.file("av"));
  EXPECT_EQ(read_text(dir.file("av/new.txt")), "new");
  EXPECT_FALSE(fs::exists(dir.file("av/old.txt")));
  EXPECT_FALSE(fs::exists(dir.file("av.tmp")));
  EXPECT_FALSE(fs::exists(dir.file("av.old")));
  // First publication: nothing to replace.
  fs::create_directories(dir.file("ar.tmp"));
  run::replace_directory(dir.file("ar.tmp"), dir.file("ar"));
  EXPECT_TRUE(fs::exists(dir.file("ar")));
}

TEST(Publishing, WritePathAtomicRenamesOnSuccessAndCleansUpOnFailure) {
  TempDir dir;
  const std::string path = dir.file("results.h5");
  write_path_atomic(path, [&](const std::string& temporary) {
    EXPECT_NE(temporary, path);
    write_text(temporary, "complete");
    EXPECT_FALSE(fs::exists(path));  // not visible before it is complete
  });
  EXPECT_EQ(read_text(path), "complete");
  std::string seen;
  EXPECT_THROW(write_path_atomic(dir.file("broken.h5"),
                                 [&](const std::string& temporary) {
                                   seen = temporary;
                                   write_text(temporary, "half");
                                   throw std::runtime_error("disk full");
                                 }),
               std::runtime_error);
  EXPECT_FALSE(fs::exists(seen));
  EXPECT_FALSE(fs::exists(dir.file("broken.h5")));
}

TEST(StepClock, TimesNamedPhasesAndReportsThemInOrder) {
  run::StepClock clock("test", 3, 10);
  clock.begin_step();
  const int value = clock.time("generate", [] { return 7; });
  clock.time("update", [] {});
  clock.time("generate", [] {});  // a phase run twice in a step adds up
  EXPECT_EQ(value, 7);
  const auto seconds = clock.seconds_json();
  ASSERT_EQ(seconds.size(), 3u);  // generate, update, step
  EXPECT_GE(seconds.at("generate").get<double>(), 0.0);
  EXPECT_GE(seconds.at("step").get<double>(), seconds.at("generate").get<double>());
  EXPECT_EQ(clock.seconds("sync"), 0.0);
  const std::string text = clock.phases_text();
  EXPECT_EQ(text.rfind("genera ", 0), 0u) << text;
  EXPECT_NE(text.find(" update "), std::string::npos) << text;
  clock.begin_step();  // a new step starts with no phases
  EXPECT_EQ(clock.seconds("generate"), 0.0);
}

TEST(Progress, ResumedWorkCountsInTheTotalNotTheRate) {
  Progress progress("train", 10, "steps");
  progress.resume_at(4);
  const std::string line = progress.line();
  EXPECT_EQ(line.rfind("train  4/10 (40%)", 0), 0u) << line;
  // Nothing done by this process yet: no rate, so no ETA from the resumed steps.
  EXPECT_EQ(line.find("ETA"), std::string::npos) << line;
  progress.finish();
}

}  // namespace
}  // namespace nla::test
