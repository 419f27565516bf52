// nla grpo for 2 steps on the GPU, on the tiny settings of tests/grpo/test_grpo_run.cpp
// (token-only gold descriptions; an AR of 40 and an AV of 80 SFT steps, trained on the
// same device; 4 activations x 4 samples a step, 12 new tokens at most):
//   - colocate on 1 rank and split on 3 ranks sharing the one GPU (1 trainer, 1 rollout,
//     1 reward rank: the weight sync and the reward traffic move CUDA tensors between
//     processes on the same device), both in fp32 with --deterministic. The trainer group
//     is one rank in both layouts and the rollouts are seeded by (seed, step, row, sample),
//     so the samples must be the same (failure rate and description lengths exactly) and
//     the numbers within 1e-5 relative (absolute below 1): they are the same computations
//     on the same device; the margin only allows a kernel to pick another algorithm for
//     another batch shape in the reward or rollout role.
//   - colocate in the GPU's default precision (bf16 compute, fp32 master weights): runs,
//     finite metrics, held-out evaluations at steps 0 and 2.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <iostream>

#include "gpu_test_support.hpp"
#include "nla/core/fs.hpp"
#include "token_descriptions.hpp"

namespace nla::test {
namespace {

class GpuGrpo : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!gpu_tier_runs()) return;
    dir_ = new TempDir();
    auto init = init_tiny_model(dir_->file("model"));
    ASSERT_EQ(init.exit_status, 0) << init.err;
    auto extract = extract_tiny_store(dir_->file("model"), "1", dir_->file("acts.h5"));
    ASSERT_EQ(extract.exit_status, 0) << extract.err;
    write_token_descriptions(dir_->file("acts.h5"), dir_->file("model"));  // gold: the token at the position
    const std::string device = device_args(gpu_device());
    auto ar = run_nla("train-ar --store " + dir_->file("acts.h5") + " --layer 1 --model " + dir_->file("model") +
                      " --out " + dir_->file("ar_run") + " --steps 40 --batch 16 --lr-max 5e-3 --lr-min 1e-3"
                      " --lr-warmup-steps 4 --eval-every 0 --seed 1 --threads 2 --log-level warn" + device);
    ASSERT_EQ(ar.exit_status, 0) << ar.err;
    auto av = run_nla("train-av --store " + dir_->file("acts.h5") + " --layer 1 --model " + dir_->file("model") +
                      " --out " + dir_->file("av_run") + " --steps 80 --batch 16 --lr-max 1e-2 --lr-min 1e-3"
                      " --lr-warmup-steps 4 --eval-every 0 --seed 1 --threads 2 --log-level warn" + device);
    ASSERT_EQ(av.exit_status, 0) << av.err;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  static std::string grpo_args(const std::string& out, const std::string& extra) {
    return "grpo --store " + dir_->file("acts.h5") + " --av " + dir_->file("av_run/av") + " --ar " +
           dir_->file("ar_run/ar") + " --out " + out +
           " --activations-per-step 4 --samples-per-activation 4 --max-new-tokens 12 --rollout-batch 2 --score-batch 8"
           " --train-batch 8 --lr 2e-3 --ar-lr 1e-3 --ar-batch 16 --seed 5 --threads 1 --eval-store " +
           dir_->file("acts.h5") + " --eval-rows 4 --eval-every 2 --steps 2 --checkpoint-every 2"
           " --ar-refresh-every 1 --log-level warn " + extra;
  }

  static TempDir* dir_;
};
TempDir* GpuGrpo::dir_ = nullptr;

// Each of `keys` present and finite in every record.
void expect_finite(const std::vector<nlohmann::json>& records, std::initializer_list<const char*> keys) {
  for (size_t i = 0; i < records.size(); ++i)
    for (const char* key : keys) {
      ASSERT_TRUE(records[i].contains(key)) << "record " << i << " lacks " << key;
      EXPECT_TRUE(records[i][key].is_number() && std::isfinite(records[i][key].get<double>()))
          << "record " << i << " " << key << " = " << records[i][key].dump();
    }
}

TEST_F(GpuGrpo, ColocateAndSplitSharingOneGpuAgreeInFp32) {
  NLA_SKIP_WITHOUT_GPU();
  const std::string colocate = dir_->file("colocate"), split = dir_->file("split");
  const std::string options = device_args(gpu_device(), "fp32") + " --deterministic";
  auto a = run_nla(grpo_args(colocate, options + " --layout colocate"));
  ASSERT_EQ(a.exit_status, 0) << a.err;
  auto b = run_command(mpirun_nla(3) + grpo_args(split, options) +
                       " --layout split --trainer-ranks 1 --rollout-ranks 1 --reward-ranks 1");
  ASSERT_EQ(b.exit_status, 0) << b.err;
  expect_ran_on(colocate, gpu_device(), "fp32");
  expect_ran_on(split, gpu_device(), "fp32");

  const auto expected = read_jsonl(colocate + "/metrics.jsonl"), got = read_jsonl(split + "/metrics.jsonl");
  ASSERT_EQ(expected.size(), 2u);
  ASSERT_EQ(got.size(), 2u);
  expect_finite(expected, {"reward_mean", "kl", "loss", "grad_norm"});
  double worst = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    for (const char* key : {"step", "failure_rate", "description_tokens"})
      EXPECT_EQ(got[i][key].dump(), expected[i][key].dump()) << "step " << i + 1 << " " << key;
    for (const char* key : {"reward_mean", "reward_std", "mse_nrm", "fve_nrm", "kl", "loss", "clip_fraction",
                            "grad_norm", "ar_mse_nrm"}) {
      if (expected[i][key].is_null() || got[i][key].is_null()) {
        EXPECT_EQ(got[i][key].is_null(), expected[i][key].is_null()) << "step " << i + 1 << " " << key;
        continue;
      }
      const double x = got[i][key].get<double>(), y = expected[i][key].get<double>();
      const double scaled = std::abs(x - y) / std::max(1.0, std::abs(y));
      worst = std::max(worst, std::isnan(scaled) ? INFINITY : scaled);
      EXPECT_LE(scaled, 1e-5) << "step " << i + 1 << " " << key << ": split " << x << ", colocate " << y;
    }
  }
  std::cout << "split (3 ranks, one GPU) vs colocate (1 rank): largest difference " << worst
            << " (relative, absolute below 1)\n";
  EXPECT_EQ(read_jsonl(split + "/eval.jsonl").size(), 2u);  // steps 0 and 2
  for (const char* name : {"av/nla_meta.yaml", "ar/nla_meta.yaml", "trainer_state/state.json"})
    EXPECT_TRUE(fs::exists(split + "/" + name)) << name;
}

TEST_F(GpuGrpo, ColocateRunsInTheDefaultPrecision) {
  NLA_SKIP_WITHOUT_GPU();
  const std::string run = dir_->file("default_precision");
  auto result = run_nla(grpo_args(run, device_args(gpu_device()) + " --layout colocate"));
  ASSERT_EQ(result.exit_status, 0) << result.err;
  expect_ran_on(run, gpu_device(), default_precision());
  const auto records = read_jsonl(run + "/metrics.jsonl");
  ASSERT_EQ(records.size(), 2u);
  expect_finite(records, {"reward_mean", "reward_std", "kl", "loss", "grad_norm"});
  const auto evaluations = read_jsonl(run + "/eval.jsonl");
  ASSERT_EQ(evaluations.size(), 2u);
  EXPECT_EQ(evaluations[0]["step"].get<int64_t>(), 0);
  EXPECT_EQ(evaluations[1]["step"].get<int64_t>(), 2);
  EXPECT_TRUE(fs::exists(run + "/av/model.safetensors"));
}

}  // namespace
}  // namespace nla::test
