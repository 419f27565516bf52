// The fused LM head + argmax of the CPU (head_argmax.hpp) against a float64 reference: every
// kernel this CPU runs, batch sizes that fill the lanes partly, once or several times, head
// dimensions that are not a multiple of anything, ties (the first index wins, also across the
// threads' parts of the vocabulary) and non-finite hidden states.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <limits>

#include "nla/core/error.hpp"
#include "nla/model/head_argmax.hpp"

namespace {

using nla::model::head_argmax_cpu;
using nla::model::head_argmax_cpu_lanes;

// Tolerance: the picked row's float64 logit is within 1e-5 of the float64 maximum (scale ~1);
// fp32 sums of C <= 96 products of N(0, 1) * N(0, 1/C) terms err by ~1e-6.
constexpr double kTolerance = 1e-5;

class HeadArgmax : public ::testing::Test {
 protected:
  void SetUp() override {
    if (head_argmax_cpu_lanes().empty()) GTEST_SKIP() << "this CPU has no AVX2 + FMA: the logits path serves";
  }
};

TEST_F(HeadArgmax, PicksTheFloat64MaximumForEveryKernelAndShape) {
  for (int64_t lanes : head_argmax_cpu_lanes())
    for (int64_t c : {64, 24, 96})
      for (int64_t b : {1, 8, 13, 32, 40}) {
        at::manual_seed(100 * c + b);
        const int64_t vocab = 5003;  // not a multiple of the kernel's 4 or 6 rows, nor of its blocks
        at::Tensor hidden = at::randn({b, c});
        at::Tensor head = at::randn({vocab, c}) / std::sqrt(static_cast<double>(c));
        at::Tensor picked = head_argmax_cpu(hidden, head, lanes);
        ASSERT_TRUE(picked.defined()) << "lanes " << lanes;
        at::Tensor logits = at::matmul(hidden.to(at::kDouble), head.to(at::kDouble).t());  // (B, V)
        at::Tensor maximum = std::get<0>(logits.max(-1));
        at::Tensor at_pick = logits.gather(1, picked.unsqueeze(1)).squeeze(1);
        EXPECT_LE((maximum - at_pick).max().item<double>(), kTolerance) << "lanes " << lanes << " C " << c << " B " << b;
        // Random logits have no near-ties at this tolerance: the same ids as float64.
        EXPECT_TRUE(at::equal(picked, logits.argmax(-1))) << "lanes " << lanes << " C " << c << " B " << b;
      }
}

TEST_F(HeadArgmax, TheFirstIndexOfATieWins) {
  const int64_t b = 20, c = 32, vocab = 4001;
  at::manual_seed(7);
  at::Tensor hidden = at::randn({b, c});
  at::Tensor head = at::randn({vocab, c}) / std::sqrt(static_cast<double>(c));
  at::Tensor reference = at::matmul(hidden.to(at::kDouble), head.to(at::kDouble).t()).argmax(-1);
  const int64_t row0 = reference[0].item<int64_t>(), row1 = reference[1].item<int64_t>();
  // Row 0's best is copied to the last head row (the other thread's part of the vocabulary
  // with two threads) and to the row after it (inside the same block of rows); row 1's best
  // to the first row. Equal rows give bit-equal sums: ties exactly.
  head[vocab - 1].copy_(head[row0]);
  if (row0 + 1 < vocab - 1) head[row0 + 1].copy_(head[row0]);
  head[0].copy_(head[row1]);
  const int64_t threads = at::get_num_threads();
  for (int64_t lanes : head_argmax_cpu_lanes())
    for (int64_t use_threads : {int64_t{1}, int64_t{2}}) {
      at::set_num_threads(static_cast<int>(use_threads));
      at::Tensor picked = head_argmax_cpu(hidden, head, lanes);
      EXPECT_EQ(picked[0].item<int64_t>(), row0) << "lanes " << lanes << " threads " << use_threads;
      EXPECT_EQ(picked[1].item<int64_t>(), 0) << "lanes " << lanes << " threads " << use_threads;
    }
  at::set_num_threads(static_cast<int>(threads));
}

TEST_F(HeadArgmax, RefusesNonFiniteHiddenStatesAndDeclinesWhatItCannotTake) {
  at::Tensor head = at::randn({300, 16});
  at::Tensor hidden = at::randn({16, 16});
  hidden[5][3] = std::numeric_limits<float>::quiet_NaN();
  for (int64_t lanes : head_argmax_cpu_lanes()) EXPECT_THROW(head_argmax_cpu(hidden, head, lanes), nla::Error);
  hidden[5][3] = std::numeric_limits<float>::infinity();
  for (int64_t lanes : head_argmax_cpu_lanes()) EXPECT_THROW(head_argmax_cpu(hidden, head, lanes), nla::Error);
  // Not float32, a head that is not contiguous, or (widest kernel) one row: undefined, the
  // caller's cue to form the logits.
  EXPECT_FALSE(head_argmax_cpu(at::randn({16, 16}, at::kDouble), head.to(at::kDouble)).defined());
  EXPECT_FALSE(head_argmax_cpu(at::randn({16, 16}), at::randn({16, 300}).t()).defined());
  EXPECT_FALSE(head_argmax_cpu(at::randn({1, 16}), head).defined());
  EXPECT_TRUE(head_argmax_cpu(at::randn({1, 16}), head, head_argmax_cpu_lanes().front()).defined());
}

}  // namespace
