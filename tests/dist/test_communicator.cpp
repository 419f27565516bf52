// The communicator's collectives against hand-computed results, on whatever rank count the
// launcher gave (ctest runs 1, 2, 3 and 4): float32 and bfloat16 (reduced in fp32), odd
// element counts, strided tensors, in-place all-gather, point-to-point, sub-groups; the
// host-text collectives (uneven and empty texts, bytes beyond ASCII); the `device` option's resolution (on a CPU-only build: cpu and auto give the CPU).
// Every rank runs every collective; checks come after, so a failed EXPECT never leaves a
// peer waiting in a collective.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "nla/core/error.hpp"
#include "nla/dist/communicator.hpp"
#include "nla/dist/device.hpp"
#include "nla/dist/text_collectives.hpp"

namespace {

using nla::dist::Communicator;
using nla::dist::ReduceOp;

// Max |a - b| over all elements, computed in float64.
double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble).reshape({-1}) - b.to(at::kDouble).reshape({-1})).abs().max().item<double>();
}

class Collectives : public testing::TestWithParam<c10::ScalarType> {};

TEST_P(Collectives, AllReduceSumAndMax) {
  Communicator comm = Communicator::world();
  const int n = comm.size(), r = comm.rank();
  const auto dtype = GetParam();
  // 7 elements: not a multiple of any rank count here. Small integers: exact in bf16.
  at::Tensor index = at::arange(1, 8, at::kDouble);  // (7) 1..7
  at::Tensor sum = (index * (r + 1)).to(dtype);
  comm.all_reduce(sum);
  at::Tensor max = (index * (r + 1)).to(dtype);
  comm.all_reduce(max, ReduceOp::max);
  EXPECT_EQ(sum.scalar_type(), dtype);
  EXPECT_EQ(max_abs_diff(sum, index * (n * (n + 1) / 2)), 0.0);
  EXPECT_EQ(max_abs_diff(max, index * n), 0.0);
}

TEST_P(Collectives, AllReduceStridedView) {
  Communicator comm = Communicator::world();
  const int n = comm.size();
  const auto dtype = GetParam();
  at::Tensor base = at::ones({3, 4}, at::TensorOptions().dtype(dtype));
  at::Tensor column = base.select(1, 2);  // (3), stride 4: reduced through a contiguous copy
  comm.all_reduce(column);
  at::Tensor expected = at::ones({3, 4}, at::kDouble);
  expected.select(1, 2).fill_(n);
  EXPECT_EQ(max_abs_diff(base, expected), 0.0);
}

TEST_P(Collectives, Bf16SumRoundsOnceInFp32) {
  // Each rank adds 2^-9 to 1 (rank 0 adds 1 + 2^-9): summing in bf16 (8 bits of mantissa)
  // would lose every 2^-9 term; summing in fp32 keeps them, then rounds once.
  Communicator comm = Communicator::world();
  const int n = comm.size(), r = comm.rank();
  const double tiny = 1.0 / 512;
  at::Tensor x = at::full({5}, r == 0 ? 1.0 + tiny : tiny, at::TensorOptions().dtype(GetParam()));
  // The input itself is rounded to bf16 first: 1 + 2^-9 -> 1 in bf16, 2^-9 exact.
  const double first = at::scalar_tensor(1.0 + tiny, at::kDouble).to(GetParam()).item<double>();
  comm.all_reduce(x);
  const double expected = static_cast<double>(at::scalar_tensor(first + (n - 1) * tiny, at::kDouble)
                                                  .to(GetParam())
                                                  .item<double>());
  EXPECT_EQ(x[4].item<double>(), expected);
}

TEST_P(Collectives, AllGatherUnevenAndInPlace) {
  Communicator comm = Communicator::world();
  const int n = comm.size(), r = comm.rank();
  const auto options = at::TensorOptions().dtype(GetParam());
  const int64_t chunk = 5;
  at::Tensor input = (at::arange(chunk, at::kDouble) + 10 * r).to(GetParam());  // (5)
  at::Tensor output = at::zeros({n * chunk}, options);                          // (N * 5)
  comm.all_gather(input, output);
  // In place: the input is this rank's chunk of the output.
  at::Tensor in_place = at::full({n * chunk}, -1.0, options);
  in_place.narrow(0, r * chunk, chunk).copy_(input);
  at::Tensor own = in_place.narrow(0, r * chunk, chunk);
  comm.all_gather(own, in_place);
  at::Tensor expected = at::arange(n * chunk, at::kDouble);
  expected = expected.remainder(chunk) + 10 * expected.div(chunk, "floor");  // 10 r + i
  EXPECT_EQ(max_abs_diff(output, expected), 0.0);
  EXPECT_EQ(max_abs_diff(in_place, expected), 0.0);
}

TEST_P(Collectives, ReduceScatter) {
  Communicator comm = Communicator::world();
  const int n = comm.size(), r = comm.rank();
  const int64_t chunk = 3;
  at::Tensor input = (at::arange(n * chunk, at::kDouble) * (r + 1)).to(GetParam());  // (N * 3): j * (r + 1)
  at::Tensor output = at::zeros({chunk}, at::TensorOptions().dtype(GetParam()));    // (3)
  comm.reduce_scatter(input, output);
  at::Tensor max = at::zeros({chunk}, at::TensorOptions().dtype(GetParam()));
  comm.reduce_scatter(input, max, ReduceOp::max);
  at::Tensor j = at::arange(r * chunk, (r + 1) * chunk, at::kDouble);
  EXPECT_EQ(max_abs_diff(output, j * (n * (n + 1) / 2)), 0.0);
  EXPECT_EQ(max_abs_diff(max, j * n), 0.0);
}

TEST_P(Collectives, BroadcastFromLastRank) {
  Communicator comm = Communicator::world();
  const int n = comm.size(), r = comm.rank();
  at::Tensor x = r == n - 1 ? at::arange(11, at::kDouble).to(GetParam()) : at::zeros({11}, GetParam());
  comm.broadcast(x, n - 1);
  EXPECT_EQ(max_abs_diff(x, at::arange(11, at::kDouble)), 0.0);
}

TEST_P(Collectives, SendRecvRing) {
  Communicator comm = Communicator::world();
  const int n = comm.size(), r = comm.rank();
  if (n == 1) GTEST_SKIP() << "no peer";  // the same on every rank
  at::Tensor out = at::full({9}, r, at::TensorOptions().dtype(GetParam()));
  at::Tensor in = at::full({9}, -1, at::TensorOptions().dtype(GetParam()));
  const int next = (r + 1) % n, previous = (r + n - 1) % n;
  // Even ranks send first, odd ranks receive first: no cycle of blocked sends.
  if (r % 2 == 0) {
    comm.send(out, next, 7);
    comm.recv(in, previous, 7);
  } else {
    comm.recv(in, previous, 7);
    comm.send(out, next, 7);
  }
  EXPECT_EQ(max_abs_diff(in, at::full({9}, previous, at::kDouble)), 0.0);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, Collectives, testing::Values(at::kFloat, at::kBFloat16),
                         [](const testing::TestParamInfo<c10::ScalarType>& info) {
                           return std::string(c10::toString(info.param));
                         });

TEST(Communicator, SubGroupsBySplit) {
  Communicator world = Communicator::world();
  const int n = world.size(), r = world.rank();
  // Two groups by parity, ordered by descending world rank (key = -rank).
  Communicator group = world.split(r % 2, -r);
  at::Tensor ranks = at::full({1}, static_cast<double>(r), at::kDouble);
  group.all_reduce(ranks);
  at::Tensor members = at::zeros({group.size()}, at::kLong);
  group.all_gather(at::full({1}, static_cast<int64_t>(r), at::kLong), members);
  double expected_sum = 0;
  int expected_size = 0, expected_rank = 0;
  for (int q = 0; q < n; ++q)
    if (q % 2 == r % 2) {
      expected_sum += q;
      ++expected_size;
      if (q > r) ++expected_rank;  // higher world ranks come first
    }
  EXPECT_EQ(group.size(), expected_size);
  EXPECT_EQ(group.rank(), expected_rank);
  EXPECT_EQ(ranks.item<double>(), expected_sum);
  for (int64_t k = 0; k + 1 < group.size(); ++k) EXPECT_GT(members[k].item<int64_t>(), members[k + 1].item<int64_t>());
  // A rank with a negative colour joins no group.
  Communicator none = world.split(r == 0 ? -1 : 0, r);
  EXPECT_EQ(none.valid(), r != 0);
  if (none.valid()) {
    EXPECT_EQ(none.size(), n - 1);
  }
}

TEST(Device, NamesResolvePerRankWithoutAGpu) {
  // Every rank calls resolve_device (collective: the node-local rank, once per process).
  const int size = Communicator::world().size();
  const auto cpu = nla::dist::resolve_device("cpu");
  const bool gpus = at::hasCUDA();
  const auto automatic = nla::dist::resolve_device("auto");
  EXPECT_TRUE(cpu.is_cpu());
  EXPECT_EQ(automatic.is_cuda(), gpus);
  EXPECT_GE(nla::dist::local_rank(), 0);
  EXPECT_LT(nla::dist::local_rank(), size);
  EXPECT_THROW(nla::dist::device_kind("gpu"), nla::InputError);
  EXPECT_THROW(nla::dist::device_kind("mps"), nla::InputError);
  if (!gpus) {
    EXPECT_THROW(nla::dist::device_kind("cuda:0"), nla::InputError);
  }
}

TEST(TextCollectives, GatherAllGatherAndBroadcastInRankOrder) {
  const auto world = Communicator::world();
  const int r = world.rank(), n = world.size();
  // Rank r's text: r copies of "r;" and a byte beyond ASCII (rank 0's is empty).
  auto text_of = [](int rank) {
    std::string text;
    for (int i = 0; i < rank; ++i) text += std::to_string(rank) + ";";
    return rank == 0 ? text : text + "\xE3\x88\x8E";
  };
  const auto all = nla::dist::all_gather_text(world.mpi_comm(), text_of(r));
  const auto gathered = nla::dist::gather_text(world.mpi_comm(), text_of(r), n - 1);
  const auto broadcast = nla::dist::broadcast_text(world.mpi_comm(), r == n - 1 ? "from the last rank" : "ignored", n - 1);
  const auto empty = nla::dist::broadcast_text(world.mpi_comm(), "", 0);
  ASSERT_EQ(all.size(), static_cast<size_t>(n));
  for (int q = 0; q < n; ++q) EXPECT_EQ(all[static_cast<size_t>(q)], text_of(q));
  if (r == n - 1) {
    ASSERT_EQ(gathered.size(), static_cast<size_t>(n));
    for (int q = 0; q < n; ++q) EXPECT_EQ(gathered[static_cast<size_t>(q)], text_of(q));
  } else {
    EXPECT_TRUE(gathered.empty());
  }
  EXPECT_EQ(broadcast, "from the last rank");
  EXPECT_EQ(empty, "");
}

}  // namespace
