// The evaluation metrics against an independent numpy implementation
// (tests/tools/metrics_ref.py) on the same vectors, for an AR trained on normalised targets
// (its outputs mapped to the layer's median norm) and one trained on raw targets (kept as
// they are), including ties in recall@k and zero-norm vectors; the raw AR's objective; and
// the distractor draw's invariants.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

#include "nla/eval/metrics.hpp"
#include "test_support.hpp"

namespace nla::test {
namespace {

nlohmann::json rows_json(const at::Tensor& rows) {
  auto contiguous = rows.to(at::kDouble).contiguous();
  nlohmann::json out = nlohmann::json::array();
  for (int64_t i = 0; i < contiguous.size(0); ++i) {
    auto row = contiguous[i];
    out.push_back(std::vector<double>(row.data_ptr<double>(), row.data_ptr<double>() + row.numel()));
  }
  return out;
}

class MetricsByTarget : public ::testing::TestWithParam<autoencoder::ArTarget> {};

TEST_P(MetricsByTarget, AgreeWithNumpyIncludingTiesAndZeroVectors) {
  const auto target = GetParam();
  at::manual_seed(5);
  const int64_t n = 40, d = 16, extra = 30, per_sample = 25, k = 3;
  auto pool = at::randn({n + extra, d}, at::kDouble);  // rows 0..n-1 are the samples' truths
  auto truth = pool.slice(0, 0, n).clone();
  // The AR's outputs: a direction-predicting AR's norms carry no meaning (here ~20x the truth's).
  auto ar_output = (truth + 0.9 * at::randn({n, d}, at::kDouble)) *
                   (target == autoencoder::ArTarget::normalized ? 20.0 : 1.0);
  ar_output[0].zero_();                  // zero prediction: every cosine is 0, all ties
  truth[1].zero_();                      // zero truth
  pool[1].zero_();
  ar_output[2] = truth[2] * 3.0;         // perfect direction, other norm
  auto distractors = eval::draw_distractors(0, n, n + extra, per_sample, 11);
  // Ties: sample 3's first distractors are exact copies of its truth (equal cosines).
  for (int64_t j = 0; j < 5; ++j) pool[distractors[3][j].item<int64_t>()] = truth[3];
  auto mean = pool.mean(0);

  TempDir dir;
  nlohmann::json input = {{"truth", rows_json(truth)},
                          {"ar_output", rows_json(ar_output)},
                          {"target", autoencoder::ar_target_name(target)},
                          {"mean", std::vector<double>(mean.data_ptr<double>(), mean.data_ptr<double>() + d)},
                          {"pool", rows_json(pool)},
                          {"distractors", nlohmann::json::array()},
                          {"k", k}};
  for (int64_t i = 0; i < n; ++i) {
    auto row = distractors[i].contiguous();
    input["distractors"].push_back(std::vector<int64_t>(row.data_ptr<int64_t>(), row.data_ptr<int64_t>() + per_sample));
  }
  write_text(dir.file("in.json"), input.dump());
  auto run = run_command(std::string(NLA_SYSTEM_PYTHON) + " " + repo_path("tests/tools/metrics_ref.py") + " " +
                         dir.file("in.json"));
  ASSERT_EQ(run.exit_status, 0) << run.err;
  auto reference = nlohmann::json::parse(run.out);

  const double median_norm = eval::median_norm(truth);
  EXPECT_NEAR(median_norm, reference["median_norm"].get<double>(), 1e-12);
  auto prediction = eval::to_activation_scale(ar_output, target, median_norm);  // (n, d) float64
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j)
      ASSERT_NEAR(prediction[i][j].item<double>(), reference["prediction"][i][j].get<double>(), 1e-12) << i << "," << j;
  auto metrics = eval::sample_metrics(truth, prediction, mean);
  auto recall = eval::recall_at_k(truth, prediction, pool, distractors, k);
  // Both sides are float64 with different summation orders: 1e-12 absolute is ample.
  const double tolerance = 1e-12;
  auto compare = [&](const char* name, const at::Tensor& ours) {
    for (int64_t i = 0; i < n; ++i) {
      double value = ours[i].item<double>();
      const auto& expected = reference[name][i];
      if (expected.is_null()) {
        EXPECT_FALSE(std::isfinite(value)) << name << "[" << i << "]";
      } else {
        EXPECT_NEAR(value, expected.get<double>(), tolerance) << name << "[" << i << "]";
      }
    }
  };
  compare("cosine", metrics.cosine);
  compare("fve_sample", metrics.fve_sample);
  compare("nrmse", metrics.nrmse);
  compare("mse_nrm", metrics.mse_nrm);
  compare("recall", recall);
  EXPECT_NEAR(eval::layer_fve(truth, prediction), reference["layer_fve"].get<double>(), tolerance);
  EXPECT_NEAR(eval::var_nrm(truth), reference["var_nrm"].get<double>(), tolerance);
  const double var_raw = autoencoder::var_raw(truth);
  EXPECT_NEAR(var_raw, reference["var_raw"].get<double>(), tolerance);
  autoencoder::ArObjective raw{autoencoder::ArTarget::raw, var_raw};
  // The objective computes in fp32 (as the AR trains): 1e-5 relative.
  auto raw_loss = raw.per_row(ar_output, truth);
  for (int64_t i = 0; i < n; ++i)
    EXPECT_NEAR(raw_loss[i].item<double>(), reference["raw_loss"][i].get<double>(),
                1e-5 * std::max(1.0, reference["raw_loss"][i].get<double>())) << "raw loss [" << i << "]";
  // The per-layer FVE: predicting the mean scores 0, the truth 1, whatever the target.
  EXPECT_NEAR(eval::layer_fve(truth, mean.unsqueeze(0).expand({n, d})), 0.0, 1e-12);
  EXPECT_NEAR(eval::layer_fve(truth, truth), 1.0, 1e-12);
  if (target == autoencoder::ArTarget::normalized) {
    auto norms = prediction.slice(0, 1).norm(2, {1});
    EXPECT_LT((norms - median_norm).abs().max().item<double>(), 1e-9) << "directions mapped to the median norm";
  } else {
    EXPECT_TRUE(at::equal(prediction, ar_output)) << "a raw AR's outputs are kept as they are";
  }

  // Known values: the identities the definitions imply.
  EXPECT_EQ(metrics.cosine[0].item<double>(), 0.0);
  EXPECT_NEAR(metrics.cosine[2].item<double>(), 1.0, 1e-15);
  EXPECT_NEAR(metrics.mse_nrm[2].item<double>(), 0.0, 1e-12);
  EXPECT_EQ(recall[3].item<double>(), 1.0) << "ties count for the truth";
  auto identity = (2.0 * (1.0 - metrics.cosine.slice(0, 2)) - metrics.mse_nrm.slice(0, 2)).abs().max().item<double>();
  EXPECT_LT(identity, 1e-12) << "mse_nrm == 2 (1 - cos) for nonzero vectors";
}

INSTANTIATE_TEST_SUITE_P(ArTargets, MetricsByTarget,
                         ::testing::Values(autoencoder::ArTarget::normalized, autoencoder::ArTarget::raw),
                         [](const auto& info) { return std::string(autoencoder::ar_target_name(info.param)); });

TEST(Metrics, DistractorsAreDistinctNeverTheSampleAndBatchIndependent) {
  auto all = eval::draw_distractors(0, 50, 500, 499, 3);
  for (int64_t i = 0; i < 50; ++i) {
    std::set<int64_t> seen;
    for (int64_t j = 0; j < 499; ++j) {
      int64_t index = all[i][j].item<int64_t>();
      EXPECT_NE(index, i);
      EXPECT_TRUE(index >= 0 && index < 500);
      seen.insert(index);
    }
    EXPECT_EQ(seen.size(), 499u);
  }
  auto part = eval::draw_distractors(20, 5, 500, 499, 3);
  EXPECT_TRUE(at::equal(part, all.slice(0, 20, 25))) << "sample i's draw does not depend on the batch";
  EXPECT_FALSE(at::equal(eval::draw_distractors(0, 50, 500, 499, 4), all));
}

}  // namespace
}  // namespace nla::test
