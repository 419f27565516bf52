// nla eval on the GPU against nla eval on the CPU, both in fp32, on the fixture of
// tests/eval/test_sweep.cpp made smaller: a tiny model's store of every layer, an AR
// trained 30 steps at layer 1, the base model saved as the AV; 24 samples, greedy answers
// of at most 12 tokens, all 4 layers. results.h5 of both runs, read with eval::read_results:
//   - the rows, documents, positions, layers and shuffled permutations: identical (seeded,
//     not computed on the device);
//   - the generated descriptions (av and random): identical for at least 95% of them.
//     Greedy decoding takes an argmax over 151,936 logits; the devices' fp32 logits differ
//     by ~1e-6, so a pair of top logits closer than that may swap and the answer part from
//     there. With this random model's logit spread (std ~0.16, top-two gap ~0.03) that is
//     rare: estimated, not measured, ~3e-5 per argmax, so about one run in ten sees one swap
//     among its ~2,300 argmaxes; 95% leaves room for a few while a device bug (a wrong mask,
//     position or dtype) changes nearly every answer;
//   - where a sample's prediction comes from the same description on both devices (every
//     sample for `mean`; av and av_normed when its av description matches; random when
//     its random one does; shuffled when the av description of its partner pi(i) does):
//     reconstructions within 1e-5 of the row's largest entry (the AR is the same fp32 math
//     in another summation order: ~1e-6 over two blocks and the head) and every metric
//     within 1e-4 (relative, absolute below 1), which those reconstruction differences
//     cannot reach; recall@10 (0 or 1 per sample) at most one sample apart per condition
//     and layer, since a distractor within ~1e-6 of the truth's distance may swap places.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <map>

#include "gpu_test_support.hpp"
#include "nla/eval/sweep.hpp"
#include "nla/model/qwen2.hpp"
#include "nla/autoencoder/checkpoint.hpp"

namespace nla::test {
namespace {

class GpuEval : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!gpu_tier_runs()) return;
    dir_ = new TempDir();
    auto init = init_tiny_model(dir_->file("model"));
    ASSERT_EQ(init.exit_status, 0) << init.err;
    auto extract = extract_tiny_store(dir_->file("model"), "all", dir_->file("acts.h5"));
    ASSERT_EQ(extract.exit_status, 0) << extract.err;
    auto label = run_nla("label --store " + dir_->file("acts.h5") + " --log-level warn");
    ASSERT_EQ(label.exit_status, 0) << label.err;
    auto train = run_nla("train-ar --store " + dir_->file("acts.h5") + " --layer 1 --model " + dir_->file("model") +
                         " --out " + dir_->file("train") + " --steps 30 --batch 16 --lr-max 5e-3 --lr-min 5e-4"
                         " --lr-warmup-steps 5 --eval-every 0 --seed 1 --threads 2 --log-level warn" +
                         device_args(gpu_device()));
    ASSERT_EQ(train.exit_status, 0) << train.err;
    // The AV: the base model with an AV nla_meta.yaml, injecting at the AR's scale.
    auto ar_meta = autoencoder::NlaMeta::read(dir_->file("train/ar"));
    auto base = model::Qwen2Model::load(dir_->file("model"));
    autoencoder::save_av(base, autoencoder::NlaMeta::defaults("av", 64, 1, ar_meta.injection_scale), dir_->file("av"),
                         dir_->file("model"));
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  static std::string eval_args(const std::string& out) {
    return "eval --av " + dir_->file("av") + " --ar " + dir_->file("train/ar") + " --model " + dir_->file("model") +
           " --store " + dir_->file("acts.h5") +
           " --layers all --samples 24 --batch 8 --max-new-tokens 12 --pool 10 --seed 5 --threads 1 --log-level warn"
           " --out " + out;
  }

  static TempDir* dir_;
};
TempDir* GpuEval::dir_ = nullptr;

bool same_or_both_nan(double a, double b) { return a == b || (std::isnan(a) && std::isnan(b)); }

TEST_F(GpuEval, Fp32MetricsMatchTheCpus) {
  NLA_SKIP_WITHOUT_GPU();
  const std::string cpu_run = dir_->file("cpu"), gpu_run = dir_->file("gpu");
  auto cpu = run_nla_on("cpu", "fp32", eval_args(cpu_run));
  ASSERT_EQ(cpu.exit_status, 0) << cpu.err;
  auto gpu = run_nla_on(gpu_device(), "fp32", eval_args(gpu_run));
  ASSERT_EQ(gpu.exit_status, 0) << gpu.err;
  expect_ran_on(cpu_run, "cpu", "fp32");
  expect_ran_on(gpu_run, gpu_device(), "fp32");

  const eval::SweepResults g = eval::read_results(gpu_run + "/results.h5"), c = eval::read_results(cpu_run + "/results.h5");
  ASSERT_EQ(g.layers, c.layers);
  ASSERT_EQ(g.layers.size(), 4u);
  ASSERT_EQ(g.rows, c.rows);
  ASSERT_EQ(g.documents, c.documents);
  ASSERT_EQ(g.positions, c.positions);
  ASSERT_TRUE(at::equal(g.permutation, c.permutation));
  const int64_t n_layers = static_cast<int64_t>(c.layers.size()), n = static_cast<int64_t>(c.rows.size());
  ASSERT_EQ(n, 24);

  // Which (layer, sample) predictions come from the same description on both devices.
  std::map<std::string, at::Tensor> same;  // condition -> (L, n) bool
  for (const char* condition : {"av", "random"}) {
    const auto& a = g.descriptions.at(condition);
    const auto& b = c.descriptions.at(condition);
    ASSERT_EQ(a.size(), b.size());
    ASSERT_EQ(static_cast<int64_t>(b.size()), n_layers * n);
    at::Tensor equal = at::zeros({n_layers, n}, at::kBool);
    int64_t matching = 0;
    for (size_t i = 0; i < b.size(); ++i)
      if (a[i] == b[i]) {
        equal.view({-1})[static_cast<int64_t>(i)] = true;
        ++matching;
      }
    std::cout << condition << ": " << matching << " of " << b.size() << " descriptions identical\n";
    EXPECT_GE(static_cast<double>(matching), 0.95 * static_cast<double>(b.size())) << condition;
    same[condition] = equal;
  }
  same["av_normed"] = same["av"];
  same["mean"] = at::ones({n_layers, n}, at::kBool);
  same["shuffled"] = same["av"].gather(1, c.permutation);  // sample i is scored with pi(i)'s av answer

  // Reconstructions of matching descriptions.
  for (const char* condition : {"av", "random"}) {
    at::Tensor x = g.reconstructions.at(condition).to(at::kDouble), y = c.reconstructions.at(condition).to(at::kDouble);
    ASSERT_EQ(x.sizes(), y.sizes());
    at::Tensor relative = (x - y).abs().amax(-1) / y.abs().amax(-1).clamp_min(1e-30);  // (L, n)
    relative = relative.masked_fill(same[condition].logical_not(), 0.0);
    const double worst = relative.max().item<double>();
    std::cout << condition << " reconstructions: max relative difference " << worst << "\n";
    EXPECT_LE(worst, 1e-5) << condition;
  }

  // Metrics, sample by sample where the prediction is comparable.
  double worst = 0;
  for (const auto& condition : eval::kConditions)
    for (const auto& metric : eval::kMetrics) {
      at::Tensor x = g.metrics.at(condition).at(metric), y = c.metrics.at(condition).at(metric);  // (L, n) float64
      ASSERT_EQ(x.sizes(), y.sizes()) << condition << " " << metric;
      const at::Tensor comparable = same.at(condition);
      for (int64_t l = 0; l < n_layers; ++l) {
        int64_t recall_flips = 0;
        for (int64_t i = 0; i < n; ++i) {
          if (!comparable[l][i].item<bool>()) continue;
          const double a = x[l][i].item<double>(), b = y[l][i].item<double>();
          if (same_or_both_nan(a, b)) continue;
          if (metric == "recall10") {
            ++recall_flips;
            continue;
          }
          const double scaled = std::abs(a - b) / std::max(1.0, std::abs(b));
          worst = std::max(worst, std::isnan(scaled) ? INFINITY : scaled);
          EXPECT_LE(scaled, 1e-4) << condition << " " << metric << " layer " << c.layers[static_cast<size_t>(l)]
                                  << " sample " << i << ": gpu " << a << ", cpu " << b;
        }
        EXPECT_LE(recall_flips, 1) << condition << " recall10 layer " << c.layers[static_cast<size_t>(l)];
      }
    }
  std::cout << "metrics: largest difference " << worst << " (relative, absolute below 1)\n";
  EXPECT_TRUE(at::allclose(g.means, c.means, 1e-5, 1e-6)) << "the mean condition's predictions differ";
}

}  // namespace
}  // namespace nla::test
