// The anchor-coverage rules of include/nla/eval/coverage.hpp on data with known answers
// (no model, no MPI job); that they equal analysis/nla_coverage.py on real runs is checked
// end to end in test_sweep.cpp. Checked here:
//   - numpy_nanmean equals np.nanmean bit for bit (numpy 1.24's pairwise sum; the expected
//     values were printed by numpy, as hex floats) where a plain loop does not;
//   - python_float_repr writes what Python's repr() writes (the CSV's number format);
//   - the exact search finds the smallest cover, the greedy one (forced) still covers;
//   - the statements: a covering set, and "No set of anchors ..." with the best achievable
//     minimum (also undefined, for a range beyond the runs);
//   - option 'coverage-layers' parsing.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "nla/core/error.hpp"
#include "nla/eval/coverage.hpp"

namespace nla::eval {
namespace {

// ((i * 7919) % 1009) / 1009 - 0.5, times 1e8 when i % 37 == 0; NaN at 5 and 99.
std::vector<double> spiky(int n) {
  std::vector<double> values;
  for (int i = 0; i < n; ++i)
    values.push_back((static_cast<double>((i * 7919) % 1009) / 1009.0 - 0.5) * (i % 37 == 0 ? 1e8 : 1.0));
  if (n >= 100) values[5] = values[99] = std::numeric_limits<double>::quiet_NaN();
  return values;
}

TEST(Coverage, NanmeanIsNumpys) {
  // /usr/bin/python3: np.nanmean(a).hex() for n = 5, 100, 300; for n = 100 a left-to-right
  // sum gives -0x1.4a5a7f334977fp+18, one unit off.
  const std::vector<std::pair<int, double>> expected = {
      {5, -0x1.312cffce797abp+23}, {100, -0x1.4a5a7f3349781p+18}, {300, -0x1.396a4449cc95ep+17}};
  for (const auto& [n, mean] : expected) {
    auto values = spiky(n);
    EXPECT_EQ(numpy_nanmean(values.data(), n), mean) << "n = " << n;
  }
  std::vector<double> all_nan(3, std::numeric_limits<double>::quiet_NaN());
  EXPECT_TRUE(std::isnan(numpy_nanmean(all_nan.data(), 3)));
}

TEST(Coverage, FloatReprIsPythons) {
  // Python 3.11: repr() of each value.
  const std::vector<std::pair<double, std::string>> cases = {
      {0.1, "0.1"}, {1e-05, "1e-05"}, {0.0001, "0.0001"}, {2.0, "2.0"}, {1e16, "1e+16"},
      {1e15, "1000000000000000.0"}, {123456789.125, "123456789.125"}, {-0.5, "-0.5"},
      {0.30000000000000004, "0.30000000000000004"}, {1.0 / 3, "0.3333333333333333"}, {5e-324, "5e-324"},
      {1.7976931348623157e308, "1.7976931348623157e+308"}, {-1.5e-7, "-1.5e-07"}, {100.0, "100.0"},
      {0.00012345, "0.00012345"}, {0.0, "0.0"}, {std::nan(""), "nan"}};
  for (const auto& [value, text] : cases) EXPECT_EQ(python_float_repr(value), text);
}

TEST(Coverage, ExactSearchFindsTheSmallestCoverAndGreedyStillCovers) {
  const std::vector<std::set<int>> covers = {{0, 1, 2, 3, 4}, {2, 3, 4, 5, 6}, {4, 5, 6, 7}, {0, 1}, {7}};
  std::vector<std::map<int, double>> scores;
  for (const auto& cover : covers) {
    std::map<int, double> s;
    for (int layer : cover) s[layer] = 1.0;
    scores.push_back(s);
  }
  const std::vector<int> range = {0, 1, 2, 3, 4, 5, 6, 7};
  std::string method;
  EXPECT_EQ(choose_cover(covers, scores, range, 20, method), (std::vector<size_t>{0, 2}));
  EXPECT_EQ(method, "exact");
  auto greedy = choose_cover(covers, scores, range, 0, method);
  EXPECT_EQ(method, "greedy");
  std::set<int> covered;
  for (size_t a : greedy) covered.insert(covers[a].begin(), covers[a].end());
  EXPECT_EQ(covered, std::set<int>(range.begin(), range.end()));
}

// Three anchors over layers 0-5 whose mean falls off with the distance to the anchor.
std::vector<AnchorMeans> three_anchors() {
  std::vector<AnchorMeans> runs;
  for (int anchor : {0, 2, 5}) {
    AnchorMeans run{"anchor_" + std::to_string(anchor), anchor, {}};
    for (int layer = 0; layer < 6; ++layer) run.means[layer] = 0.9 - 0.125 * std::abs(layer - anchor);
    runs.push_back(run);
  }
  return runs;
}

TEST(Coverage, StatementsNameTheSetOrTheBestAchievableMinimum) {
  auto runs = three_anchors();
  CoverageOptions options;
  options.min_cosine = 0.7;  // an anchor covers its layer and the next ones: all three are needed
  auto covered = compute_coverage(runs, coverage_range("all", {0, 1, 2, 3, 4, 5}), options);
  EXPECT_TRUE(covered.uncovered.empty());
  EXPECT_EQ(covered.chosen, (std::vector<size_t>{0, 1, 2}));
  EXPECT_EQ(covered.statement,
            "Anchor set {0, 2, 5} keeps every layer of 0-5 at cosine >= 0.7 (exact search; lowest mean 0.775 at "
            "layer 1).");
  EXPECT_EQ(covered.rows.size(), 6u);
  EXPECT_EQ(covered.rows[1].best, 0);  // layer 1: anchors 0 and 2 tie at 0.775, the earlier wins

  options.min_cosine = 0.8;  // only the anchors' own layers reach it
  auto uncovered = compute_coverage(runs, coverage_range("0-5", {0, 1, 2, 3, 4, 5}), options);
  EXPECT_EQ(uncovered.uncovered, (std::vector<int>{1, 3, 4}));
  EXPECT_EQ(uncovered.best_achievable_minimum, 0.9 - 0.125);
  EXPECT_EQ(uncovered.weakest_layer, 1);
  EXPECT_TRUE(std::isnan(uncovered.chosen_minimum));
  EXPECT_EQ(uncovered.statement,
            "No set of anchors keeps every layer of 0-5 at cosine >= 0.8: layers 1, 3, 4 stay below it with every "
            "anchor; the best achievable minimum is 0.775 (layer 1). Smallest set covering the other layers (exact "
            "search): {0, 2, 5}.");

  auto beyond = compute_coverage(runs, coverage_range("4-7", {0, 1, 2, 3, 4, 5}), options);
  EXPECT_TRUE(std::isnan(beyond.best_achievable_minimum));
  EXPECT_EQ(beyond.weakest_layer, 6);
  EXPECT_EQ(beyond.rows.size(), 8u);  // every run's layers and the range's
  EXPECT_NE(beyond.statement.find("undefined (no anchor was evaluated at layer 6)"), std::string::npos)
      << beyond.statement;
}

TEST(Coverage, LayerOptionParsing) {
  EXPECT_EQ(coverage_range("all", {3, 5}), (std::vector<int>{3, 5}));
  EXPECT_EQ(coverage_range("2-4", {}), (std::vector<int>{2, 3, 4}));
  EXPECT_EQ(coverage_range("7", {}), (std::vector<int>{7}));
  for (const char* bad : {"4-2", "x", "1-", "-1", "1-2-3", ""})
    EXPECT_THROW(coverage_range(bad, {}), InputError) << bad;
}

}  // namespace
}  // namespace nla::eval
