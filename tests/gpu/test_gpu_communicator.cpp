// The communicator's collectives on CUDA tensors against hand-computed results, on the rank
// count the launcher gave (ctest runs 1 and 2): each rank on GPU local_rank() % visible GPUs,
// so on a one-GPU machine the 2 ranks share it. On 1 rank the tensors go through NCCL; 2
// ranks sharing a GPU cannot form an NCCL communicator (NCCL refuses two ranks on one
// device), so there the communicator moves them over MPI. Either way: the values are
// right, the results stay on the rank's device, float32 and bfloat16 (reduced in fp32),
// odd element counts, a 12 MB all-reduce, point-to-point, and CPU collectives still work
// after CUDA ones. Integers and halves only: exact in bf16, so every check is equality.
// Every rank runs every collective; checks come after, so a failed EXPECT never leaves a
// peer waiting in a collective.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>  // defines: torch::cuda::device_count

#include <iostream>

#include "gpu_test_support.hpp"
#include "nla/dist/communicator.hpp"

namespace nla::test {
namespace {

using dist::Communicator;
using dist::ReduceOp;

// This rank's device: one GPU per local rank (modulo the visible ones), or the CPU when
// NLA_GPU_TIER_DEVICE says so.
c10::Device rank_device() {
  if (gpu_device().rfind("cuda", 0) != 0) return c10::Device(gpu_device());
  const int count = static_cast<int>(torch::cuda::device_count());
  return c10::Device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(dist::local_rank() % count));
}

// Skips (returns) when CUDA tensors cannot reach the communicator: no device visible, or
// an nla built without CUDA/NCCL (NLA_CUDA=OFF) against a CUDA LibTorch. The same on every rank.
#if defined(NLA_WITH_CUDA)
#define NLA_SKIP_WITHOUT_CUDA_COLLECTIVES() NLA_SKIP_WITHOUT_GPU()
#else
#define NLA_SKIP_WITHOUT_CUDA_COLLECTIVES()                                                        \
  do {                                                                                             \
    NLA_SKIP_WITHOUT_GPU();                                                                        \
    if (gpu_device().rfind("cuda", 0) == 0) GTEST_SKIP() << "nla built without CUDA/NCCL (NLA_CUDA=OFF)"; \
  } while (false)
#endif

// Max |a - b| over all elements, in float64 on the CPU.
double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kCPU).to(at::kDouble).reshape({-1}) - b.to(at::kCPU).to(at::kDouble).reshape({-1}))
      .abs()
      .max()
      .item<double>();
}

class GpuCollectives : public testing::TestWithParam<c10::ScalarType> {
 protected:
  void SetUp() override {
    NLA_SKIP_WITHOUT_CUDA_COLLECTIVES();
    rank_device();           // its first call is collective (local_rank): here, on every rank alike
  }
  at::TensorOptions on_device() const { return at::TensorOptions().dtype(GetParam()).device(rank_device()); }
};

TEST_P(GpuCollectives, AllReduceSumAndMax) {
  Communicator comm = Communicator::world();
  const int n = comm.size(), r = comm.rank();
  at::Tensor index = at::arange(1, 8, at::kDouble);  // (7) 1..7: not a multiple of any rank count
  at::Tensor sum = (index * (r + 1)).to(on_device());
  comm.all_reduce(sum);
  at::Tensor max = (index * (r + 1)).to(on_device());
  comm.all_reduce(max, ReduceOp::max);
  EXPECT_EQ(sum.device(), rank_device());
  EXPECT_EQ(sum.scalar_type(), GetParam());
  EXPECT_EQ(max_abs_diff(sum, index * (n * (n + 1) / 2)), 0.0);
  EXPECT_EQ(max_abs_diff(max, index * n), 0.0);
}

TEST_P(GpuCollectives, LargeAllReduce) {
  // 3 * 2^20 elements (12 MB in fp32): more than one chunk for a backend that stages
  // through host memory. Values r + (i mod 64) and their sums over 1 or 2 ranks are
  // integers below 256: exact in bf16.
  Communicator comm = Communicator::world();
  const int n = comm.size(), r = comm.rank();
  const int64_t count = 3 << 20;
  at::Tensor pattern = at::arange(count, at::TensorOptions().dtype(at::kLong).device(rank_device())).remainder(64);
  at::Tensor x = (pattern + r).to(GetParam());
  comm.all_reduce(x);
  at::Tensor expected = pattern.to(at::kDouble) * n + n * (n - 1) / 2;
  EXPECT_EQ(x.device(), rank_device());
  EXPECT_EQ((x.to(at::kDouble) - expected).abs().max().item<double>(), 0.0);
}

TEST_P(GpuCollectives, BroadcastFromLastRank) {
  Communicator comm = Communicator::world();
  const int n = comm.size(), r = comm.rank();
  at::Tensor x = r == n - 1 ? at::arange(11, at::kDouble).to(on_device()) : at::zeros({11}, on_device());
  comm.broadcast(x, n - 1);
  EXPECT_EQ(x.device(), rank_device());
  EXPECT_EQ(max_abs_diff(x, at::arange(11, at::kDouble)), 0.0);
}

TEST_P(GpuCollectives, AllGatherAndReduceScatter) {
  Communicator comm = Communicator::world();
  const int n = comm.size(), r = comm.rank();
  const int64_t chunk = 5;
  at::Tensor input = (at::arange(chunk, at::kDouble) + 10 * r).to(on_device());  // (5): 10 r + i
  at::Tensor gathered = at::zeros({n * chunk}, on_device());                      // (N * 5)
  comm.all_gather(input, gathered);
  at::Tensor scattered_input = (at::arange(n * 3, at::kDouble) * (r + 1)).to(on_device());  // (N * 3): j (r + 1)
  at::Tensor scattered = at::zeros({3}, on_device());
  comm.reduce_scatter(scattered_input, scattered);

  at::Tensor expected = at::arange(n * chunk, at::kDouble);
  expected = expected.remainder(chunk) + 10 * expected.div(chunk, "floor");
  EXPECT_EQ(gathered.device(), rank_device());
  EXPECT_EQ(max_abs_diff(gathered, expected), 0.0);
  EXPECT_EQ(max_abs_diff(scattered, at::arange(r * 3, (r + 1) * 3, at::kDouble) * (n * (n + 1) / 2)), 0.0);
}

TEST_P(GpuCollectives, SendRecvRing) {
  Communicator comm = Communicator::world();
  const int n = comm.size(), r = comm.rank();
  if (n == 1) GTEST_SKIP() << "no peer";  // the same on every rank
  at::Tensor out = at::full({9}, r, on_device());
  at::Tensor in = at::full({9}, -1, on_device());
  const int next = (r + 1) % n, previous = (r + n - 1) % n;
  // Even ranks send first, odd ranks receive first: no cycle of blocked sends.
  if (r % 2 == 0) {
    comm.send(out, next, 7);
    comm.recv(in, previous, 7);
  } else {
    comm.recv(in, previous, 7);
    comm.send(out, next, 7);
  }
  EXPECT_EQ(in.device(), rank_device());
  EXPECT_EQ(max_abs_diff(in, at::full({9}, previous, at::kDouble)), 0.0);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, GpuCollectives, testing::Values(at::kFloat, at::kBFloat16),
                         [](const testing::TestParamInfo<c10::ScalarType>& info) {
                           return std::string(c10::toString(info.param));
                         });

TEST(GpuCommunicator, CpuCollectivesStillWorkAfterCudaOnes) {
  NLA_SKIP_WITHOUT_CUDA_COLLECTIVES();
  Communicator comm = Communicator::world();
  const int n = comm.size(), r = comm.rank();
  at::Tensor on_gpu = at::full({4}, r + 1.0, at::TensorOptions().dtype(at::kFloat).device(rank_device()));
  comm.all_reduce(on_gpu);
  at::Tensor on_cpu = at::full({4}, r + 1.0, at::kFloat);
  comm.all_reduce(on_cpu);
  // Which device each rank used, for the log: shared or one GPU per rank.
  at::Tensor devices = at::zeros({n}, at::kLong);
  comm.all_gather(at::full({1}, static_cast<int64_t>(rank_device().index()), at::kLong), devices);
  if (r == 0) {
    std::cout << n << " rank(s) on device index";
    for (int64_t q = 0; q < n; ++q) std::cout << " " << devices[q].item<int64_t>();
    std::cout << " of " << rank_device().type() << "\n";
  }
  EXPECT_EQ(max_abs_diff(on_gpu, at::full({4}, n * (n + 1) / 2.0, at::kDouble)), 0.0);
  EXPECT_EQ(max_abs_diff(on_cpu, at::full({4}, n * (n + 1) / 2.0, at::kDouble)), 0.0);
}

}  // namespace
}  // namespace nla::test
