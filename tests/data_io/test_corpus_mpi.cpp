// Corpus sharding under a real MPI launch: each rank reads its own shard with no
// communication; together the ranks cover every document exactly once.
#include <gtest/gtest.h>
#include <mpi.h>

#include <functional>

#include "corpus_fixtures.hpp"
#include "nla/core/world.hpp"
#include "test_support.hpp"

namespace nla::test {
namespace {

TEST(CorpusMpi, ShardsCoverTheDefaultCorpusOnce) {
  auto options = corpus_options({data::default_corpus_path()});
  // The whole corpus as every rank sees it alone: count and an order-free digest.
  auto fingerprint = [](const data::Document& doc) {
    return std::hash<std::string>{}(doc.id + '\x1f' + doc.text) ^ (static_cast<uint64_t>(doc.index) * 0x9E3779B97F4A7C15ULL);
  };
  uint64_t whole_count = 0, whole_digest = 0;
  for (const auto& doc : read_all(options)) {
    ++whole_count;
    whole_digest += fingerprint(doc);
  }
  options.rank = world_rank();
  options.world_size = world_size();
  uint64_t count = 0, digest = 0;
  for (const auto& doc : read_all(options)) {
    EXPECT_EQ(doc.index % world_size(), world_rank());
    ++count;
    digest += fingerprint(doc);
  }
  uint64_t total_count = 0, total_digest = 0;
  MPI_Allreduce(&count, &total_count, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
  MPI_Allreduce(&digest, &total_digest, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
  EXPECT_EQ(total_count, whole_count);
  EXPECT_EQ(total_digest, whole_digest);
  EXPECT_GT(count, 0u);
}

}  // namespace
}  // namespace nla::test
