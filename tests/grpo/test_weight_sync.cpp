// Weight broadcasts of the split layout, under the MPI launcher (ctest runs 3 and 4
// ranks): the trainer group shards a small Qwen2 (seed A); every rollout and reward rank
// holds a plain model of another seed (B); after WeightStream::send/receive the plain
// models equal the trainer's model exactly. A 1 KiB bucket makes every tensor straddle
// buckets; a 64 MB bucket sends the model in one broadcast. In colocate layout the
// gathered model is the reference itself.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "nla/dist/fsdp.hpp"
#include "nla/grpo/roles.hpp"
#include "nla/core/error.hpp"
#include "nla/grpo/weight_sync.hpp"
#include "nla/model/qwen2.hpp"

namespace nla::grpo {
namespace {

model::Qwen2Config small_config() {
  model::Qwen2Config config = model::qwen2_preset("tiny");
  config.vocab_size = 96;
  config.num_hidden_layers = 2;
  return config;
}

void expect_same(model::Qwen2Model& got, model::Qwen2Model& expected) {
  auto a = got.named_parameters(), b = expected.named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].first, b[i].first);
    EXPECT_TRUE(at::equal(a[i].second, b[i].second)) << a[i].first;
  }
}

class WeightSync : public testing::TestWithParam<int64_t> {};

TEST_P(WeightSync, SplitLayoutReceiversEqualTheTrainersModel) {
  auto world = dist::Communicator::world();
  if (world.size() < 3) GTEST_SKIP() << "split layout needs 3 ranks";
  const int trainers = world.size() - 2;  // 1 or 2 trainers, 1 rollout, 1 reward rank
  auto layout = make_role_layout("split", world.size(), trainers, 1, 1);
  auto groups = make_role_groups(layout, world);
  const int rank = world.rank();
  const int64_t bucket_bytes = GetParam();
  auto reference = model::Qwen2Model::random_init(small_config(), 1);

  std::unique_ptr<dist::ShardedModel> sharded;
  if (layout.has(rank, Role::trainer))
    sharded = std::make_unique<dist::ShardedModel>(model::Qwen2Model::random_init(small_config(), 1), groups.trainer);
  model::Qwen2Model receiver;
  if (!layout.has(rank, Role::trainer)) receiver = model::Qwen2Model::random_init(small_config(), 2);

  WeightStream av_stream, ar_stream;
  if (rank == 0) av_stream = WeightStream::sender(*sharded, groups.av_sync, bucket_bytes);
  if (layout.has(rank, Role::rollout)) av_stream = WeightStream::receiver(receiver.named_parameters(), groups.av_sync, bucket_bytes);
  if (rank == 0) ar_stream = WeightStream::sender(*sharded, groups.ar_sync, bucket_bytes);
  if (layout.has(rank, Role::reward)) ar_stream = WeightStream::receiver(receiver.named_parameters(), groups.ar_sync, bucket_bytes);
  if (rank == 0) {
    EXPECT_EQ(av_stream.buckets(), (av_stream.total_numel() * 4 + bucket_bytes - 1) / bucket_bytes);
  }

  if (layout.has(rank, Role::trainer)) WeightStream::send(*sharded, rank == 0 ? &av_stream : nullptr);
  if (layout.has(rank, Role::rollout)) av_stream.receive();
  if (layout.has(rank, Role::trainer)) WeightStream::send(*sharded, rank == 0 ? &ar_stream : nullptr);
  if (layout.has(rank, Role::reward)) ar_stream.receive();
  if (!layout.has(rank, Role::trainer)) expect_same(receiver, reference);

  // The trainers' gathered model (the colocate path) is the same model too.
  if (layout.has(rank, Role::trainer)) {
    auto gathered = sharded->gather_model();
    expect_same(gathered, reference);
  }
  world.barrier();
}

INSTANTIATE_TEST_SUITE_P(Buckets, WeightSync, testing::Values(int64_t{1024}, int64_t{64} << 20));

TEST(WeightSyncErrors, ReceiverMissingAParameterIsNamed) {
  auto world = dist::Communicator::world();
  if (world.size() < 3) GTEST_SKIP() << "split layout needs 3 ranks";
  auto layout = make_role_layout("split", world.size(), world.size() - 2, 1, 1);
  auto groups = make_role_groups(layout, world);
  const int rank = world.rank();
  std::unique_ptr<dist::ShardedModel> sharded;
  if (layout.has(rank, Role::trainer))
    sharded = std::make_unique<dist::ShardedModel>(model::Qwen2Model::random_init(small_config(), 1), groups.trainer);
  if (rank == 0) WeightStream::sender(*sharded, groups.av_sync, 1 << 20);
  if (layout.has(rank, Role::rollout)) {
    auto receiver = model::Qwen2Model::random_init(small_config(), 2);
    auto parameters = receiver.named_parameters();
    parameters.pop_back();
    try {
      WeightStream::receiver(parameters, groups.av_sync, 1 << 20);
      ADD_FAILURE() << "a missing parameter must be refused";
    } catch (const InputError& error) {
      EXPECT_NE(std::string(error.what()).find("which the receiving model lacks"), std::string::npos) << error.what();
    }
  }
  world.barrier();
}

}  // namespace
}  // namespace nla::grpo
