// The evaluation metrics against an independent numpy implementation
// (tests/tools/metrics_ref.py) on the same vectors, including ties in recall@k and
// zero-norm vectors; and the distractor draw's invariants.
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

TEST(Metrics, AgreeWithNumpyIncludingTiesAndZeroVectors) {
  at::manual_seed(5);
  const int64_t n = 40, d = 16, extra = 30, per_sample = 25, k = 3;
  auto pool = at::randn({n + extra, d}, at::kDouble);  // rows 0..n-1 are the samples' truths
  auto truth = pool.slice(0, 0, n).clone();
  auto prediction = truth + 0.9 * at::randn({n, d}, at::kDouble);
  prediction[0].zero_();                 // zero prediction: every cosine is 0, all ties
  truth[1].zero_();                      // zero truth
  pool[1].zero_();
  prediction[2] = truth[2] * 3.0;        // perfect direction, other norm
  auto distractors = eval::draw_distractors(0, n, n + extra, per_sample, 11);
  // Ties: sample 3's first distractors are exact copies of its truth (equal cosines).
  for (int64_t j = 0; j < 5; ++j) pool[distractors[3][j].item<int64_t>()] = truth[3];
  auto mean = pool.mean(0);

  TempDir dir;
  nlohmann::json input = {{"truth", rows_json(truth)},
                          {"prediction", rows_json(prediction)},
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
  compare("fve", metrics.fve);
  compare("nrmse", metrics.nrmse);
  compare("mse_nrm", metrics.mse_nrm);
  compare("recall", recall);
  EXPECT_NEAR(eval::layer_fve(truth, prediction, mean), reference["layer_fve"].get<double>(), tolerance);
  EXPECT_NEAR(eval::var_nrm(truth), reference["var_nrm"].get<double>(), tolerance);

  // Known values: the identities the definitions imply.
  EXPECT_EQ(metrics.cosine[0].item<double>(), 0.0);
  EXPECT_NEAR(metrics.cosine[2].item<double>(), 1.0, 1e-15);
  EXPECT_NEAR(metrics.mse_nrm[2].item<double>(), 0.0, 1e-12);
  EXPECT_EQ(recall[3].item<double>(), 1.0) << "ties count for the truth";
  auto identity = (2.0 * (1.0 - metrics.cosine.slice(0, 2)) - metrics.mse_nrm.slice(0, 2)).abs().max().item<double>();
  EXPECT_LT(identity, 1e-12) << "mse_nrm == 2 (1 - cos) for nonzero vectors";
}

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
