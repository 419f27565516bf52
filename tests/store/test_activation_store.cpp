// The activation store under 1, 2 and 3 ranks: the same file content whatever the rank
// count, resume after an interrupted run, read access, and h5py reading the result.
#include <gtest/gtest.h>
#include <mpi.h>


#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/core/world.hpp"
#include "nla/store/activation_store.hpp"
#include "test_support.hpp"

namespace nla::store {
namespace {

constexpr int64_t kDocuments = 11;
constexpr int64_t kHidden = 5;
const std::vector<int> kLayers = {0, 3};

// Every value is a function of (document, sample, layer, column): what a correct store
// holds is known exactly, so stores written by different rank counts must agree.
float expected_value(int64_t document, int64_t sample, int layer, int64_t column) {
  return static_cast<float>(document * 1000 + sample * 10 + layer) + 0.01f * static_cast<float>(column);
}

int64_t samples_in(int64_t document) { return document % 4; }  // 0..3, some documents have none

StoreHeader test_header() {
  StoreHeader header;
  header.model = "tiny-test";
  header.model_config = "{\"hidden_size\": 5}";
  header.tokenizer_sha256 = "abc";
  header.created_by = "test";
  header.seed = 7;
  header.positions_per_doc = 3;
  header.hidden_size = kHidden;
  header.layers = kLayers;
  header.skipped = {{"too_short", 2}, {"invalid_utf8", 1}};
  return header;
}

// Round-robin documents, as extraction distributes them.
std::vector<StoreDocument> my_documents() {
  std::vector<StoreDocument> documents;
  for (int64_t index = world_rank(); index < kDocuments; index += world_size()) {
    StoreDocument document;
    document.index = index;
    document.id = "doc-" + std::to_string(index);
    document.source = index % 2 ? "wiki" : "code";
    document.text = "text of document " + std::to_string(index) + " \u00e9\u4e2d";
    for (int64_t k = 0; k < samples_in(index); ++k) {
      document.positions.push_back(static_cast<int32_t>(50 + 3 * k));
      document.tokens.push_back(static_cast<int32_t>(100 + index));
    }
    documents.push_back(std::move(document));
  }
  return documents;
}

// Writes the pending documents two per round; stops after `max_rounds` rounds (< 0: all).
void write_rounds(ActivationStoreWriter& writer, int max_rounds) {
  const auto& pending = writer.pending_documents();
  int64_t my_rounds = (static_cast<int64_t>(pending.size()) + 1) / 2, rounds = 0;
  MPI_Allreduce(&my_rounds, &rounds, 1, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
  if (max_rounds >= 0) rounds = std::min<int64_t>(rounds, max_rounds);
  for (int64_t round = 0; round < rounds; ++round) {
    std::vector<int64_t> documents;
    std::vector<std::vector<float>> rows(kLayers.size());
    for (size_t i = 2 * round; i < std::min(pending.size(), size_t(2 * round + 2)); ++i) {
      const auto& document = pending[i];
      documents.push_back(document.index);
      for (size_t k = 0; k < kLayers.size(); ++k)
        for (int64_t sample = 0; sample < samples_in(document.index); ++sample)
          for (int64_t column = 0; column < kHidden; ++column)
            rows[k].push_back(expected_value(document.index, sample, kLayers[k], column));
    }
    std::vector<const float*> pointers;
    for (auto& layer_rows : rows) pointers.push_back(layer_rows.data());
    writer.write_round(documents, pointers);
  }
}

// A directory every rank agrees on (rank 0 makes it).
std::string shared_directory(const std::string& name) {
  std::string path = fs::join(fs::temp_directory(), "nla-store-test-" + name);
  char buffer[4096] = {0};
  if (world_rank() == 0) {
    path += "-" + std::to_string(getpid());
    fs::remove_all(path);
    fs::create_directories(path);
    std::snprintf(buffer, sizeof buffer, "%s", path.c_str());
  }
  MPI_Bcast(buffer, sizeof buffer, MPI_CHAR, 0, MPI_COMM_WORLD);
  return buffer;
}

void expect_store_content(const std::string& path) {
  ActivationStore store(path);
  int64_t total = 0;
  for (int64_t d = 0; d < kDocuments; ++d) total += samples_in(d);
  ASSERT_EQ(store.n_samples(), total);
  ASSERT_EQ(store.n_documents(), kDocuments);
  EXPECT_EQ(store.layers(), kLayers);
  EXPECT_EQ(store.header().skipped.at("too_short"), 2);
  EXPECT_EQ(store.document_text(4), "text of document 4 \u00e9\u4e2d");
  EXPECT_EQ(store.document_source(3), "wiki");
  EXPECT_EQ(store.document_id(10), "doc-10");
  int64_t row = 0;
  for (int64_t d = 0; d < kDocuments; ++d) {
    for (int64_t sample = 0; sample < samples_in(d); ++sample, ++row) {
      ASSERT_EQ(store.sample_document(row), d);
      EXPECT_EQ(store.sample_position(row), 50 + 3 * sample);
      EXPECT_EQ(store.sample_token(row), 100 + d);
      for (int layer : kLayers) {
        auto values = store.read_rows(layer, row, 1);
        for (int64_t column = 0; column < kHidden; ++column)
          ASSERT_EQ(values[column], expected_value(d, sample, layer, column)) << "row " << row << " layer " << layer;
      }
    }
  }
  // Scattered rows in any order, with a repeat.
  std::vector<int64_t> wanted = {5, 0, 5, store.n_samples() - 1};
  auto scattered = store.read_rows(3, wanted);
  for (size_t k = 0; k < wanted.size(); ++k) {
    auto single = store.read_rows(3, wanted[k], 1);
    for (int64_t column = 0; column < kHidden; ++column) EXPECT_EQ(scattered[k * kHidden + column], single[column]);
  }
  EXPECT_THROW(store.read_rows(7, 0, 1), InputError);
}

TEST(ActivationStore, WrittenByAnyRankCountHoldsExactlyTheRows) {
  std::string directory = shared_directory("plain");
  std::string path = directory + "/acts.h5";
  {
    ActivationStoreWriter writer(path, test_header(), my_documents(), MPI_COMM_WORLD);
    EXPECT_FALSE(writer.resumed());
    EXPECT_FALSE(fs::exists(path)) << "incomplete stores are never at the final path";
    write_rounds(writer, -1);
    writer.finish();
  }
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_FALSE(fs::exists(path + ".partial"));
  expect_store_content(path);  // every rank reads independently

  if (world_rank() == 0) {
    // An independent reader: Debian's h5py opens the file and its attributes.
    auto result = test::run_command(std::string(NLA_SYSTEM_PYTHON) + " " + test::repo_path("tests/tools/check_store_h5py.py") +
                                    " " + path);
    EXPECT_EQ(result.exit_status, 0) << result.out << result.err;
    EXPECT_NE(result.out.find("ok n=" + std::to_string(ActivationStore(path).n_samples())), std::string::npos)
        << result.out << result.err;
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) fs::remove_all(directory);
}

TEST(ActivationStore, ResumesAnInterruptedRunToTheSameContent) {
  std::string directory = shared_directory("resume");
  std::string path = directory + "/acts.h5";
  {
    ActivationStoreWriter first(path, test_header(), my_documents(), MPI_COMM_WORLD);
    write_rounds(first, 1);  // then "killed": no finish()
  }
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_TRUE(fs::exists(path + ".partial"));
  EXPECT_THROW(ActivationStore{path}, InputError);  // not finished: refused by readers

  // A different extraction must not continue this file.
  StoreHeader other = test_header();
  other.seed = 8;
  try {
    ActivationStoreWriter wrong(path, other, my_documents(), MPI_COMM_WORLD);
    ADD_FAILURE() << "resumed a different extraction";
  } catch (const InputError& error) {
    EXPECT_TRUE(error.on_all_ranks());
    EXPECT_NE(std::string(error.what()).find("different extraction"), std::string::npos);
  }

  ActivationStoreWriter second(path, test_header(), my_documents(), MPI_COMM_WORLD);
  EXPECT_TRUE(second.resumed());
  int64_t pending = second.pending_documents().size(), all_pending = 0;
  MPI_Allreduce(&pending, &all_pending, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
  EXPECT_EQ(all_pending, kDocuments - std::min<int64_t>(2 * world_size(), kDocuments))
      << "the first round's documents are not redone";
  write_rounds(second, -1);
  second.finish();
  MPI_Barrier(MPI_COMM_WORLD);
  expect_store_content(path);
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) fs::remove_all(directory);
}

TEST(ActivationStore, DescriptionsRoundTrip) {
  std::string directory = shared_directory("descriptions");
  std::string path = directory + "/acts.h5";
  {
    ActivationStoreWriter writer(path, test_header(), my_documents(), MPI_COMM_WORLD);
    write_rounds(writer, -1);
    writer.finish();
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) {
    std::vector<std::string> descriptions;
    for (int64_t row = 0; row < ActivationStore(path).n_samples(); ++row)
      descriptions.push_back("<explanation>\n" + std::to_string(row) + " \u2603\n</explanation>");
    ActivationStore::write_descriptions(path, "gold", descriptions);
    ActivationStore reopened(path);
    EXPECT_EQ(reopened.read_descriptions("gold"), descriptions);
    EXPECT_FALSE(reopened.has_descriptions("av"));
    EXPECT_THROW(reopened.read_descriptions("av"), InputError);
    fs::remove_all(directory);
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

TEST(ActivationStore, RejectsFilesThatAreNotStores) {
  if (world_rank() != 0) return;
  test::TempDir dir;
  test::write_text(dir.file("x.h5"), "not hdf5 at all");
  try {
    ActivationStore store(dir.file("x.h5"));
    FAIL();
  } catch (const InputError& error) {
    EXPECT_EQ(std::string(error.what()), dir.file("x.h5") + ": not an HDF5 file");
  }
  EXPECT_THROW(ActivationStore(dir.file("missing.h5")), InputError);
}

}  // namespace
}  // namespace nla::store
