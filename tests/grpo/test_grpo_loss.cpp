// The GRPO objective on a hand-computed example and its gradient against central finite
// differences; the role layout's arithmetic and work dealing.
//
// Hand example (values worked out on paper, digits from /usr/bin/python3): two samples,
// advantages +1 and -1, clip eps 0.2, KL coefficient 0.01, 5 answer tokens.
//   row 0 (A = +1): log-ratios 0.5, -0.5, 0   -> rho 1.6487 (above 1 + eps: clipped to 1.2),
//                   0.6065 (below 1 - eps, but A > 0 takes the unclipped min), 1
//   row 1 (A = -1): log-ratios -0.5, 0.1, pad -> rho 0.6065 (below 1 - eps, A < 0: clipped
//                   to -0.8), 1.1052 (inside), the padded token ignored
//   ref - logp: row 0: 0.2, -0.3, 0; row 1: 0.1, 0  -> k3 = e^d - d - 1
//   loss_t = -surrogate + 0.01 k3; token mean = sum / 5
//   sequence mean: row 0's mean over 3 tokens and row 1's over 2, averaged over the 2 rows
//   k1 = logp - ref = -(ref - logp): row 0: -0.2, 0.3, 0; row 1: -0.1, 0
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cmath>

#include "nla/grpo/loss.hpp"
#include "nla/grpo/roles.hpp"
#include "nla/core/error.hpp"

namespace nla::grpo {
namespace {

const LossOptions kTokenK3{0.2, 0.01, KlEstimator::k3, LossAggregation::token};

struct Example {
  at::Tensor logprobs, old_logprobs, ref_logprobs, advantages, mask;
};

Example hand_example() {
  auto f64 = at::TensorOptions().dtype(at::kDouble);
  Example e;
  e.old_logprobs = at::tensor({-1.0, -2.0, -0.5, -1.5, -0.7, 0.0}, f64).view({2, 3});
  at::Tensor log_ratio = at::tensor({0.5, -0.5, 0.0, -0.5, 0.1, 0.0}, f64).view({2, 3});
  e.logprobs = (e.old_logprobs + log_ratio).clone();
  e.logprobs.index_put_({1, 2}, 50.0);  // padding holds garbage: it must not count
  at::Tensor ref_minus_logp = at::tensor({0.2, -0.3, 0.0, 0.1, 0.0, 0.0}, f64).view({2, 3});
  e.ref_logprobs = e.logprobs + ref_minus_logp;
  e.ref_logprobs.index_put_({1, 2}, -80.0);
  e.advantages = at::tensor({1.0, -1.0}, f64);
  e.mask = at::tensor({1, 1, 1, 1, 1, 0}, at::kInt).view({2, 3}).to(at::kBool);
  return e;
}

TEST(GrpoLoss, HandComputedExample) {
  auto e = hand_example();
  auto sums = grpo_loss_sums(e.logprobs, e.old_logprobs, e.ref_logprobs, e.advantages, e.mask, kTokenK3);
  // Per token: -1.19978597, -0.60612248, -1.0, 0.80005171, 1.10517092
  EXPECT_NEAR(sums.loss.item<double>(), -0.9006858226678105, 1e-12);
  EXPECT_NEAR(sums.loss.item<double>() / sums.tokens, -0.1801371645335621, 1e-12);  // token mean
  EXPECT_NEAR(sums.kl, 0.06739189691753533, 1e-12);
  EXPECT_EQ(sums.clipped, 2.0);  // one on each side of the clip range
  EXPECT_EQ(sums.tokens, 5.0);
}

TEST(GrpoLoss, GradientByHandAndByFiniteDifferences) {
  auto e = hand_example();
  at::Tensor logprobs = e.logprobs.clone().requires_grad_(true);
  auto loss_of = [&](const at::Tensor& x) {
    return grpo_loss_sums(x, e.old_logprobs, e.ref_logprobs, e.advantages, e.mask, kTokenK3).loss / 5.0;
  };
  loss_of(logprobs).backward();
  at::Tensor grad = logprobs.grad();
  // By hand: clipped tokens keep only the KL term 0.01 (1 - e^d) / 5; others add -A rho / 5.
  const double by_hand[6] = {-0.0004428055163203397, -0.12078776838389012, -0.2,
                             -0.00021034183615129543, 0.22103418361512955, 0.0};
  const double h = 1e-6;
  for (int64_t i = 0; i < 6; ++i) {
    const int64_t r = i / 3, t = i % 3;
    EXPECT_NEAR(grad[r][t].item<double>(), by_hand[i], 1e-12) << "token " << i;
    at::Tensor plus = e.logprobs.clone(), minus = e.logprobs.clone();
    plus.index_put_({r, t}, plus[r][t].item<double>() + h);
    minus.index_put_({r, t}, minus[r][t].item<double>() - h);
    const double numeric = (loss_of(plus).item<double>() - loss_of(minus).item<double>()) / (2 * h);
    EXPECT_NEAR(grad[r][t].item<double>(), numeric, 1e-8) << "token " << i;
  }
}

TEST(GrpoLoss, AtTheOldPolicyTheGradientIsThePolicyGradient) {
  // ratio 1 everywhere: no clipping, and with kl_coef 0 the gradient is -A / tokens.
  auto f64 = at::TensorOptions().dtype(at::kDouble);
  at::Tensor old = at::tensor({-1.0, -2.0, -3.0, -4.0}, f64).view({2, 2});
  at::Tensor logprobs = old.clone().requires_grad_(true);
  at::Tensor mask = at::ones({2, 2}, at::kBool);
  auto sums = grpo_loss_sums(logprobs, old, old, at::tensor({0.5, -2.0}, f64), mask,
                             {0.2, 0.0, KlEstimator::k3, LossAggregation::token});
  (sums.loss / 4.0).backward();
  EXPECT_EQ(sums.clipped, 0.0);
  EXPECT_NEAR(sums.kl, 0.0, 1e-15);
  EXPECT_NEAR(logprobs.grad()[0][1].item<double>(), -0.125, 1e-15);
  EXPECT_NEAR(logprobs.grad()[1][0].item<double>(), 0.5, 1e-15);
}

// The gradient of `options`' loss divided by its units, against the values worked out with
// numpy from the per-token derivatives (clipped tokens: KL term only; others -A rho) and
// against central finite differences.
void expect_gradient(const LossOptions& options, double units, const double (&by_hand)[6]) {
  auto e = hand_example();
  auto loss_of = [&](const at::Tensor& x) {
    return grpo_loss_sums(x, e.old_logprobs, e.ref_logprobs, e.advantages, e.mask, options).loss / units;
  };
  at::Tensor logprobs = e.logprobs.clone().requires_grad_(true);
  loss_of(logprobs).backward();
  const double h = 1e-6;
  for (int64_t i = 0; i < 6; ++i) {
    const int64_t r = i / 3, t = i % 3;
    EXPECT_NEAR(logprobs.grad()[r][t].item<double>(), by_hand[i], 1e-12) << "token " << i;
    at::Tensor plus = e.logprobs.clone(), minus = e.logprobs.clone();
    plus.index_put_({r, t}, plus[r][t].item<double>() + h);
    minus.index_put_({r, t}, minus[r][t].item<double>() - h);
    const double numeric = (loss_of(plus).item<double>() - loss_of(minus).item<double>()) / (2 * h);
    EXPECT_NEAR(logprobs.grad()[r][t].item<double>(), numeric, 1e-8) << "token " << i;
  }
}

TEST(GrpoLoss, SequenceMeanAveragesEachSamplesTokensThenTheSamples) {
  auto e = hand_example();
  const LossOptions sequence{0.2, 0.01, KlEstimator::k3, LossAggregation::sequence};
  auto sums = grpo_loss_sums(e.logprobs, e.old_logprobs, e.ref_logprobs, e.advantages, e.mask, sequence);
  // (-1.19978597 - 0.60612248 - 1.0) / 3 + (0.80005171 + 1.10517092) / 2
  EXPECT_NEAR(sums.loss.item<double>(), 0.01730849698679726, 1e-12);
  EXPECT_EQ(sums.sequences, 2.0);
  EXPECT_EQ(loss_units(LossAggregation::sequence, sums.tokens, sums.sequences), 2.0);
  EXPECT_EQ(loss_units(LossAggregation::token, sums.tokens, sums.sequences), 5.0);
  EXPECT_NEAR(sums.loss.item<double>() / 2.0, 0.008654248493398631, 1e-12);  // the step's loss
  // The metrics do not depend on the aggregation.
  EXPECT_NEAR(sums.kl, 0.06739189691753533, 1e-12);
  EXPECT_EQ(sums.clipped, 2.0);
  // Row 0's tokens weigh 1/3 / 2, row 1's 1/2 / 2.
  expect_gradient(sequence, 2.0, {-0.00036900459693361645, -0.10065647365324176, -0.16666666666666666,
                                  -0.0002629272951891193, 0.27629272951891193, 0.0});
}

TEST(GrpoLoss, K1IsTheLogRatioWithAConstantGradient) {
  auto e = hand_example();
  const LossOptions k1{0.2, 0.01, KlEstimator::k1, LossAggregation::token};
  auto sums = grpo_loss_sums(e.logprobs, e.old_logprobs, e.ref_logprobs, e.advantages, e.mask, k1);
  // The k3 sum -0.90068582 with 0.01 (k1 - k3) per token instead: sum k1 = -0.2 + 0.3 - 0.1 = 0.
  EXPECT_NEAR(sums.loss.item<double>(), -0.9013597416369858, 1e-12);
  EXPECT_NEAR(sums.kl, 0.06739189691753533, 1e-12);  // the metric stays k3
  // d k1 / d logp = 1 on every token: 0.01 / 5 where the surrogate is clipped.
  expect_gradient(k1, 5.0, {0.002, -0.11930613194252668, -0.198, 0.002, 0.22303418361512956, 0.0});
}

TEST(GrpoLoss, OnPolicyK1HasZeroExpectedGradientK3PullsTowardTheReference) {
  // A 3-token vocabulary, policy p and reference q; one answer token y drawn from p. The
  // expected KL gradient over y, E_p[d kl(y) / d z] (z the policy's logits), is exact below.
  auto f64 = at::TensorOptions().dtype(at::kDouble);
  at::Tensor z = at::tensor({0.3, -1.0, 0.8}, f64).requires_grad_(true);
  at::Tensor log_q = at::log_softmax(at::tensor({0.0, 0.5, -0.5}, f64), 0);
  auto expected_gradient = [&](KlEstimator estimator) {
    at::Tensor log_p = at::log_softmax(z, 0);
    at::Tensor p = log_p.exp().detach();
    at::Tensor total = at::zeros({}, f64);
    for (int64_t y = 0; y < 3; ++y) {
      at::Tensor lp = log_p[y].view({1, 1});
      at::Tensor fixed = lp.detach();  // old = logp: ratio 1; advantage 0: the KL term alone
      auto sums = grpo_loss_sums(lp, fixed, log_q[y].view({1, 1}), at::zeros({1}, f64), at::ones({1, 1}, at::kBool),
                                 {0.2, 1.0, estimator, LossAggregation::token});
      total = total + p[y] * sums.loss;
    }
    if (z.grad().defined()) z.grad().zero_();
    total.backward();
    return z.grad().clone();
  };
  EXPECT_LT(expected_gradient(KlEstimator::k1).abs().max().item<double>(), 1e-12);  // inert in expectation
  // k3's: sum_y (p_y - q_y) d log p_y = -sum_y q_y d log p_y, the gradient of KL(q || p): a
  // pull toward the reference.
  at::Tensor k3 = expected_gradient(KlEstimator::k3);
  z.grad().zero_();
  (-(log_q.exp() * at::log_softmax(z, 0)).sum()).backward();
  EXPECT_LT((k3 - z.grad()).abs().max().item<double>(), 1e-12);
  EXPECT_GT(k3.abs().max().item<double>(), 1e-2);
}

TEST(GrpoLoss, EstimatorAndAggregationNames) {
  EXPECT_EQ(parse_kl_estimator("k1"), KlEstimator::k1);
  EXPECT_EQ(parse_kl_estimator("k3"), KlEstimator::k3);
  EXPECT_EQ(parse_loss_aggregation("sequence"), LossAggregation::sequence);
  EXPECT_EQ(parse_loss_aggregation("token"), LossAggregation::token);
  EXPECT_THROW(parse_kl_estimator("k2"), InputError);
  EXPECT_THROW(parse_loss_aggregation("mean"), InputError);
}

TEST(GrpoAdvantages, NormalisedWithinEachGroup) {
  // groups of 3: [1, 3, 2] (mean 2, sample std 1), [2, 0, 4] (mean 2, sample std 2)
  auto a = group_advantages({1, 3, 2, 2, 0, 4}, 3);
  const double expected[6] = {-0.9999000099990001, 0.9999000099990001, 0.0, 0.0, -0.9999500024998749,
                              0.9999500024998749};
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(a[static_cast<size_t>(i)], expected[i], 1e-15) << i;
  AdvantageOptions centred;
  centred.scale_by_std = false;
  auto b = group_advantages({1, 3, 2, 2, 0, 4}, 3, centred);
  const double expected_centred[6] = {-1, 1, 0, 0, -2, 2};
  for (int i = 0; i < 6; ++i) EXPECT_DOUBLE_EQ(b[static_cast<size_t>(i)], expected_centred[i]) << i;
  // A group whose samples all failed (-2 each) has no signal: zero advantages, not NaN.
  auto c = group_advantages({-2, -2, -2, -2}, 2);
  for (double value : c) EXPECT_EQ(value, 0.0);
}

TEST(GrpoRoles, LayoutArithmetic) {
  auto colocate = make_role_layout("colocate", 3, 0, 0, 0);
  EXPECT_TRUE(colocate.colocate);
  for (int r = 0; r < 3; ++r)
    for (Role role : {Role::trainer, Role::rollout, Role::reward}) EXPECT_EQ(colocate.index(r, role), r);

  auto split = make_role_layout("split", 5, 2, 2, 1);
  EXPECT_EQ(split.index(0, Role::trainer), 0);
  EXPECT_EQ(split.index(1, Role::trainer), 1);
  EXPECT_EQ(split.index(2, Role::trainer), -1);
  EXPECT_EQ(split.index(2, Role::rollout), 0);
  EXPECT_EQ(split.index(3, Role::rollout), 1);
  EXPECT_EQ(split.index(4, Role::reward), 0);
  EXPECT_EQ(split.index(4, Role::rollout), -1);
  EXPECT_EQ(split.describe(), "split: trainer ranks 0-1, rollout 2-3, reward 4");

  try {
    make_role_layout("split", 4, 2, 1, 2);
    FAIL() << "a world of 4 cannot hold 2 + 1 + 2";
  } catch (const InputError& error) {
    EXPECT_NE(std::string(error.what()).find("2 + 1 + 2 = 5 ranks, but the job has 4"), std::string::npos)
        << error.what();
  }
  EXPECT_THROW(make_role_layout("split", 3, 0, 2, 1), InputError);
  EXPECT_THROW(make_role_layout("pipeline", 3, 1, 1, 1), InputError);
}

TEST(GrpoRoles, WorkDealing) {
  EXPECT_EQ(my_chunks(7, 1, 3), (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(my_chunks(2, 2, 3), (std::vector<int64_t>{}));
  EXPECT_EQ(my_chunks(5, -1, 3), (std::vector<int64_t>{}));
  EXPECT_EQ(my_block(10, 0, 3), (std::pair<int64_t, int64_t>{0, 3}));
  EXPECT_EQ(my_block(10, 2, 3), (std::pair<int64_t, int64_t>{6, 10}));
}

}  // namespace
}  // namespace nla::grpo
