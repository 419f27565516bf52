// The hand-written CPU kernels of the decode step against float64 references, every kernel
// this CPU runs (AVX-512, AVX2):
// - the fused LM head + argmax (head_argmax.hpp): batch sizes that fill the lanes partly, once
//   or several times, head dimensions that are not a multiple of anything, ties (the first
//   index wins, also across the threads' parts of the vocabulary), non-finite hidden states;
// - the decode attention (decode_attention.hpp): grouped and plain heads, head dimensions with
//   a tail, keys in a larger cache, a per-row or shared bias with masked keys, none.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "nla/core/error.hpp"
#include "nla/model/cpu_parallel.hpp"
#include "nla/model/decode_attention.hpp"
#include "nla/model/head_argmax.hpp"

namespace {

using nla::model::decode_attention_cpu;
using nla::model::decode_attention_cpu_lanes;
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

// softmax(q k^T / sqrt(D) + bias) v in float64, the KV heads shared by groups of query heads.
at::Tensor attention_float64(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& bias) {
  const int64_t group = q.size(1) / k.size(1);
  at::Tensor keys = k.to(at::kDouble).repeat_interleave(group, 1), values = v.to(at::kDouble).repeat_interleave(group, 1);
  at::Tensor scores = at::matmul(q.to(at::kDouble), keys.transpose(-1, -2)) / std::sqrt(static_cast<double>(q.size(3)));
  if (bias.defined()) scores = scores + bias.to(at::kDouble);
  return at::matmul(at::softmax(scores, -1), values);
}

class DecodeAttention : public ::testing::Test {
 protected:
  void SetUp() override {
    if (decode_attention_cpu_lanes().empty()) GTEST_SKIP() << "this CPU has no AVX2 + FMA: the ATen path serves";
  }
};

TEST_F(DecodeAttention, EqualsFloat64ForEveryKernelAndShape) {
  struct Shape {
    int64_t b, heads, kv_heads, d, keys;
  };
  // tiny (4 heads over 2, D 16), qwen2.5-0.5b's grouping (14 over 2, D 64), plain heads with a
  // head dimension that is no multiple of the lanes, one key.
  for (const Shape& shape : {Shape{3, 4, 2, 16, 37}, Shape{2, 14, 2, 64, 100}, Shape{2, 6, 6, 20, 9}, Shape{1, 2, 1, 8, 1}})
    for (int64_t lanes : decode_attention_cpu_lanes())
      for (int bias_kind = 0; bias_kind < 3; ++bias_kind) {  // per-row bias, one shared bias, none
        at::manual_seed(shape.d * 100 + shape.keys);
        const int64_t capacity = shape.keys + 11;  // the keys are the first columns of a larger cache
        at::Tensor q = at::randn({shape.b, shape.heads, 1, shape.d});
        at::Tensor k = at::randn({shape.b, shape.kv_heads, capacity, shape.d}).narrow(2, 0, shape.keys);
        at::Tensor v = at::randn({shape.b, shape.kv_heads, capacity, shape.d}).narrow(2, 0, shape.keys);
        at::Tensor bias;
        if (bias_kind < 2) {
          bias = at::zeros({bias_kind == 0 ? shape.b : 1, 1, 1, capacity}).narrow(3, 0, shape.keys);
          for (int64_t j = 0; j + 1 < shape.keys; j += 3)  // every third key masked as generate masks
            bias.select(3, j).fill_(std::numeric_limits<float>::lowest());
        }
        at::Tensor out = decode_attention_cpu(q, k, v, bias, lanes);
        ASSERT_TRUE(out.defined()) << "lanes " << lanes;
        ASSERT_EQ(out.sizes(), q.sizes());
        // fp32 vs float64 over <= 100 keys of N(0, 1) values: ~1e-6.
        EXPECT_LT((out.to(at::kDouble) - attention_float64(q, k, v, bias)).abs().max().item<double>(), 1e-5)
            << "lanes " << lanes << " D " << shape.d << " keys " << shape.keys << " bias kind " << bias_kind;
      }
}

TEST_F(DecodeAttention, MaskedKeysChangeNothingAndWhatItCannotTakeIsDeclined) {
  at::manual_seed(5);
  const int64_t b = 4, keys = 50;
  at::Tensor q = at::randn({b, 4, 1, 16}), k = at::randn({b, 2, keys, 16}), v = at::randn({b, 2, keys, 16});
  at::Tensor bias = at::zeros({b, 1, 1, keys});
  bias.narrow(3, 0, 20).fill_(std::numeric_limits<float>::lowest());  // a row refilled late: its first columns masked
  at::Tensor out = decode_attention_cpu(q, k, v, bias);
  // Whatever the masked columns hold (zeros, as generate leaves them, or anything finite),
  // their weight is exactly 0 and the sums over the rest are the same: bit for bit.
  k.narrow(2, 0, 20).normal_(0, 10);
  v.narrow(2, 0, 20).normal_(0, 10);
  EXPECT_TRUE(at::equal(decode_attention_cpu(q, k, v, bias), out));
  // Two queries per row, 16-bit types, keys whose rows are not contiguous: not this kernel.
  EXPECT_FALSE(decode_attention_cpu(at::randn({b, 4, 2, 16}), k, v, bias).defined());
  EXPECT_FALSE(decode_attention_cpu(q.to(at::kBFloat16), k.to(at::kBFloat16), v.to(at::kBFloat16), bias).defined());
  EXPECT_FALSE(decode_attention_cpu(q, k.transpose(2, 3).contiguous().transpose(2, 3), v, bias).defined());
}

TEST(CpuParallel, NlaModelsParallelForRunsOnSeveralThreads) {
  // Without OpenMP in nla_model's build, at::parallel_for there is one loop on one thread and
  // every kernel above loses its threads without an error.
  const int threads = at::get_num_threads();
  at::set_num_threads(2);
  EXPECT_EQ(nla::model::parallel_for_threads(64), 2);
  EXPECT_EQ(nla::model::parallel_for_threads(1), 1);
  at::set_num_threads(1);
  EXPECT_EQ(nla::model::parallel_for_threads(64), 1);
  at::set_num_threads(threads);
}

}  // namespace
