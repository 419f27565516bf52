// nla train-ar and nla train-av on the GPU, killed and resumed: a run with trainer_state/
// every 2 steps, SIGKILLed after step 3 (the --kill-after-steps hook test_sft_cli uses on
// the CPU) and rerun with the same command, against an uninterrupted run on the same device.
//   - With --deterministic (the default precision: bf16 compute, fp32 master weights and
//     optimizer state): every metrics record (train and validation) and the final
//     checkpoint bit-identical. Deterministic algorithms and a fixed cuBLAS workspace make
//     each step a function of the saved state, so a resume reproduces it exactly.
//   - Without it, in fp32: the train losses and the final validation within 1e-4 (relative,
//     absolute below 1). Kernels that reduce with atomics (the embedding's and index_add's
//     backward) may sum in another order in each run: ~1e-7 relative per step, which six
//     AdamW steps carry on but keep far below 1e-4; a resume that restored the wrong state
//     (step, learning rate, optimizer moments) differs at 1e-3 or more.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <iostream>

#include "gpu_test_support.hpp"
#include "nla/core/fs.hpp"

namespace nla::test {
namespace {

class GpuTrain : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!gpu_tier_runs()) return;
    dir_ = new TempDir();
    auto init = init_tiny_model(dir_->file("model"));
    ASSERT_EQ(init.exit_status, 0) << init.err;
    auto extract = extract_tiny_store(dir_->file("model"), "1", dir_->file("acts.h5"));
    ASSERT_EQ(extract.exit_status, 0) << extract.err;
    auto label = run_nla("label --store " + dir_->file("acts.h5") + " --log-level warn");
    ASSERT_EQ(label.exit_status, 0) << label.err;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  // `command` (train-ar | train-av) for 6 steps with trainer_state/ every 2 steps.
  static std::string train_args(const std::string& command, const std::string& extra) {
    return command + " --store " + dir_->file("acts.h5") + " --layer 1 --model " + dir_->file("model") +
           " --steps 6 --batch 6 --save-every 2 --eval-every 0 --max-eval-samples 16 --lr-max 3e-3"
           " --lr-warmup-steps 1 --seed 4 --threads 1 " + extra + " --out ";
  }

  // Runs `args` uninterrupted into `whole`, and killed after step 3 (trainer_state/ of
  // step 2 left behind) then rerun into `resumed`.
  static void run_whole_and_resumed(const std::string& args, const std::string& whole, const std::string& resumed) {
    auto reference = run_nla(args + whole);
    ASSERT_EQ(reference.exit_status, 0) << reference.err;
    auto killed = run_nla(args + resumed + " --kill-after-steps 3");
    EXPECT_NE(killed.exit_status, 0) << killed.err;
    ASSERT_TRUE(fs::exists(resumed + "/trainer_state/state.json")) << killed.err;
    EXPECT_EQ(nlohmann::json::parse(read_text(resumed + "/trainer_state/state.json"))["step"].get<int64_t>(), 2);
    auto again = run_nla(args + resumed);
    ASSERT_EQ(again.exit_status, 0) << again.err;
    EXPECT_NE(again.err.find("resumed from"), std::string::npos) << again.err;
  }

  // provenance.json: the tier's device, its default precision, deterministic algorithms.
  static void expect_ran_on_deterministically(const std::string& run) {
    expect_ran_on(run, gpu_device(), default_precision());
    EXPECT_TRUE(nlohmann::json::parse(read_text(run + "/provenance.json")).value("deterministic", false)) << run;
  }

  static TempDir* dir_;
};
TempDir* GpuTrain::dir_ = nullptr;

TEST_F(GpuTrain, ArResumedAfterKillIsBitIdenticalWithDeterministic) {
  NLA_SKIP_WITHOUT_GPU();
  const std::string whole = dir_->file("ar_whole"), resumed = dir_->file("ar_resumed");
  ASSERT_NO_FATAL_FAILURE(
      run_whole_and_resumed(train_args("train-ar", device_args(gpu_device()) + " --deterministic"), whole, resumed));
  expect_ran_on_deterministically(whole);
  ASSERT_EQ(metric_values(whole, "loss", "train").size(), 6u);
  EXPECT_EQ(records_without_timing(resumed), records_without_timing(whole));
  for (const char* file : {"ar/model.safetensors", "ar/value_head.safetensors"})
    EXPECT_TRUE(read_text(resumed + "/" + file) == read_text(whole + "/" + file)) << file << " differs";
}

TEST_F(GpuTrain, AvResumedAfterKillIsBitIdenticalWithDeterministic) {
  NLA_SKIP_WITHOUT_GPU();
  const std::string whole = dir_->file("av_whole"), resumed = dir_->file("av_resumed");
  ASSERT_NO_FATAL_FAILURE(
      run_whole_and_resumed(train_args("train-av", device_args(gpu_device()) + " --deterministic"), whole, resumed));
  expect_ran_on_deterministically(whole);
  ASSERT_EQ(metric_values(whole, "loss", "train").size(), 6u);
  EXPECT_EQ(records_without_timing(resumed), records_without_timing(whole));
  EXPECT_TRUE(read_text(resumed + "/av/model.safetensors") == read_text(whole + "/av/model.safetensors"))
      << "av/model.safetensors differs";
}

TEST_F(GpuTrain, ArResumedAfterKillIsCloseWithoutDeterministicInFp32) {
  NLA_SKIP_WITHOUT_GPU();
  const std::string whole = dir_->file("ar_fp32_whole"), resumed = dir_->file("ar_fp32_resumed");
  ASSERT_NO_FATAL_FAILURE(run_whole_and_resumed(train_args("train-ar", device_args(gpu_device(), "fp32")), whole, resumed));
  expect_ran_on(whole, gpu_device(), "fp32");
  double worst = 0;
  for (const char* key : {"loss", "fve_nrm"}) {
    const auto expected = metric_values(whole, key), got = metric_values(resumed, key);
    ASSERT_EQ(got.size(), expected.size()) << key;
    ASSERT_FALSE(expected.empty()) << key;
    for (size_t i = 0; i < expected.size(); ++i) {
      const double scaled = std::abs(got[i] - expected[i]) / std::max(1.0, std::abs(expected[i]));
      worst = std::max(worst, std::isnan(scaled) ? INFINITY : scaled);
      EXPECT_LE(scaled, 1e-4) << key << " record " << i << ": " << got[i] << " vs " << expected[i];
    }
  }
  std::cout << "fp32 without --deterministic, resumed vs whole: largest difference " << worst
            << " (relative, absolute below 1)\n";
}

}  // namespace
}  // namespace nla::test
