// model::token_logprobs (chunked log p(target) with the expected-row gradient) against
// autograd through the plain log-softmax in float64, and the model's target_ids hook
// against its own logits.
#include <c10/core/GradMode.h>  // c10::NoGradGuard (LibTorch 2.x has no at:: alias here)
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "model_test_util.hpp"
#include "nla/model/qwen2.hpp"
#include "nla/model/token_logprobs.hpp"

namespace {

using nla::model::token_logprobs;

// float64 both ways: only the summation order differs.
constexpr double kFloat64Tolerance = 1e-12;
// float32 chunked vs the float64 reference, relative to the largest value.
constexpr double kFloat32Tolerance = 2e-5;

struct Problem {
  at::Tensor hidden, head, targets, upstream;
};

// Logits of spread O(3) so the softmax is far from uniform, and repeated targets.
Problem make_problem(int64_t n, int64_t c, int64_t vocab, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto f64 = at::TensorOptions().dtype(at::kDouble);
  Problem p;
  p.hidden = at::randn({n, c}, gen, f64);
  p.head = at::randn({vocab, c}, gen, f64) * (3.0 / std::sqrt(static_cast<double>(c)));
  p.targets = at::randint(vocab, {n}, gen, at::TensorOptions().dtype(at::kLong));
  p.targets[1] = p.targets[0];
  p.upstream = at::randn({n}, gen, f64);
  return p;
}

at::Tensor reference_logprobs(const at::Tensor& hidden, const at::Tensor& head, const at::Tensor& targets) {
  return at::log_softmax(at::linear(hidden, head), 1).gather(1, targets.unsqueeze(1)).squeeze(1);
}

class TokenLogprobs : public ::testing::Test {
 protected:
  void SetUp() override { at::set_num_threads(1); }
};

TEST_F(TokenLogprobs, ValuesAndHiddenGradientMatchTheLogSoftmaxForAnyChunking) {
  auto p = make_problem(37, 16, 1000, 3);
  at::Tensor ref_hidden = p.hidden.clone().requires_grad_(true);
  at::Tensor expected = reference_logprobs(ref_hidden, p.head, p.targets);
  (expected * p.upstream).sum().backward();
  for (int64_t chunk : {1, 7, 333, 1000, 0}) {
    SCOPED_TRACE("chunk_vocab " + std::to_string(chunk));
    at::Tensor hidden = p.hidden.clone().requires_grad_(true);
    at::Tensor got = token_logprobs(hidden, p.head, p.targets, chunk);
    ASSERT_EQ(got.scalar_type(), at::kDouble);
    EXPECT_LE(nla::test::compare(got, expected.detach()).max_rel, kFloat64Tolerance);
    (got * p.upstream).sum().backward();
    EXPECT_LE(nla::test::compare(hidden.grad(), ref_hidden.grad()).max_rel, kFloat64Tolerance);
  }
}

TEST_F(TokenLogprobs, TrainedHeadGetsTheLogSoftmaxGradient) {
  auto p = make_problem(9, 8, 300, 5);
  at::Tensor ref_hidden = p.hidden.clone().requires_grad_(true), ref_head = p.head.clone().requires_grad_(true);
  (reference_logprobs(ref_hidden, ref_head, p.targets) * p.upstream).sum().backward();
  at::Tensor hidden = p.hidden.clone().requires_grad_(true), head = p.head.clone().requires_grad_(true);
  (token_logprobs(hidden, head, p.targets) * p.upstream).sum().backward();
  EXPECT_LE(nla::test::compare(hidden.grad(), ref_hidden.grad()).max_rel, kFloat64Tolerance);
  EXPECT_LE(nla::test::compare(head.grad(), ref_head.grad()).max_rel, kFloat64Tolerance);
}

TEST_F(TokenLogprobs, Float32AndBatchShapesAndNoGrad) {
  auto p = make_problem(24, 16, 2000, 7);
  at::Tensor expected = reference_logprobs(p.hidden, p.head, p.targets);  // (24) float64
  at::Tensor hidden32 = p.hidden.to(at::kFloat).view({4, 6, 16}).requires_grad_(true);
  at::Tensor got = token_logprobs(hidden32, p.head.to(at::kFloat), p.targets.view({4, 6}), 5);
  ASSERT_EQ(got.sizes(), (std::vector<int64_t>{4, 6}));
  ASSERT_EQ(got.scalar_type(), at::kFloat);
  EXPECT_LE(nla::test::compare(got.reshape({-1}).to(at::kDouble), expected).max_rel, kFloat32Tolerance);
  {
    c10::NoGradGuard no_grad;
    at::Tensor plain = token_logprobs(p.hidden, p.head, p.targets);
    EXPECT_FALSE(plain.requires_grad());
    EXPECT_LE(nla::test::compare(plain, expected).max_rel, kFloat64Tolerance);
  }
}

// The forward's target_ids hook: log p(target) at logits_index, as the logits there say, and
// the same gradient with respect to the input embeddings (through the blocks and final norm).
TEST_F(TokenLogprobs, ModelTargetIdsEqualItsLogitsAtTheIndex) {
  auto model = nla::test::spread_random_model(nla::test::small_config(2, 4, 2, 8, 48, 211, true), 11);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(2);
  at::Tensor ids = at::randint(211, {3, 10}, gen, at::TensorOptions().dtype(at::kLong));
  at::Tensor upstream = at::randn({3, 4}, gen);
  at::Tensor embeds = model.weights().embed_tokens.index_select(0, ids.reshape({-1})).view({3, 10, -1});
  nla::model::ForwardOptions options;
  options.logits_index = (at::arange(4, at::kLong) + 5).expand({3, 4});  // (3, 4)
  at::Tensor targets = ids.slice(1, 6, 10);                              // (3, 4)

  nla::model::ForwardInput reference_input;
  reference_input.inputs_embeds = embeds.clone().requires_grad_(true);
  auto logits = model.forward(reference_input, options).logits;  // (3, 4, V)
  at::Tensor expected = at::log_softmax(logits, 2).gather(2, targets.unsqueeze(2)).squeeze(2);
  (expected * upstream).sum().backward();

  nla::model::ForwardInput input;
  input.inputs_embeds = embeds.clone().requires_grad_(true);
  options.target_ids = targets;
  auto out = model.forward(input, options);
  EXPECT_FALSE(out.logits.defined());
  ASSERT_EQ(out.token_logprobs.sizes(), targets.sizes());
  EXPECT_LE(nla::test::compare(out.token_logprobs, expected.detach()).max_rel, kFloat32Tolerance);
  (out.token_logprobs * upstream).sum().backward();
  EXPECT_LE(nla::test::compare(input.inputs_embeds.grad(), reference_input.inputs_embeds.grad()).max_rel,
            kFloat32Tolerance);
}

}  // namespace
