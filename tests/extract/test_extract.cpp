// nla extract end to end on the tiny model: the store holds the model's hidden states at
// the recorded positions, is identical on 1, 2 and 3 ranks, resumes after SIGKILL to the
// same content, is read by h5py, and bad input exits 2 with one line.
#include <c10/core/GradMode.h>  // c10::NoGradGuard (LibTorch 2.x has no at:: alias here)
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cstring>

#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/extract/extract.hpp"
#include "nla/model/layer_list.hpp"
#include "nla/io/safetensors.hpp"
#include "nla/model/qwen2.hpp"
#include "nla/store/activation_store.hpp"
#include "nla/tokenizer/tokenizer.hpp"
#include "test_support.hpp"

namespace nla::test {
namespace {

const std::string kMpi = "OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1 OMP_NUM_THREADS=1 " +
                         std::string(MPIEXEC) + " -n ";

// One tiny checkpoint and corpus for the whole suite (init-model takes a second).
class Extract : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    auto init = run_nla("init-model --preset tiny --seed 3 --tokenizer " + repo_path("models/tokenizer.json") + " --out " +
                        dir_->file("model"));
    ASSERT_EQ(init.exit_status, 0) << init.err;
  }
  static void TearDownTestSuite() { delete dir_; }

  static std::string extract_args(const std::string& out) {
    // The first 13 documents of the bundled corpus.
    return "extract --model " + dir_->file("model") + " --corpus " + repo_path("data/corpus") + " --max-docs 13" +
           " --layers 0,2-3 --positions-per-doc 4 --min-position 20 --max-tokens 200 --batch-docs 3 --seed 11" +
           // Bit-identical results need the same threads per rank (reductions split by thread).
           " --threads 1 --out " +
           out;
  }

  static TempDir* dir_;
};
TempDir* Extract::dir_ = nullptr;

void expect_same_stores(const std::string& a_path, const std::string& b_path) {
  store::ActivationStore a(a_path), b(b_path);
  ASSERT_EQ(a.n_samples(), b.n_samples());
  ASSERT_EQ(a.n_documents(), b.n_documents());
  ASSERT_EQ(a.layers(), b.layers());
  EXPECT_EQ(a.header().skipped, b.header().skipped);
  for (int64_t row = 0; row < a.n_samples(); ++row) {
    ASSERT_EQ(a.sample_document(row), b.sample_document(row)) << row;
    ASSERT_EQ(a.sample_position(row), b.sample_position(row)) << row;
    ASSERT_EQ(a.sample_token(row), b.sample_token(row)) << row;
  }
  for (int64_t document = 0; document < a.n_documents(); ++document)
    ASSERT_EQ(a.document_text(document), b.document_text(document));
  for (int layer : a.layers()) {
    auto x = a.read_rows(layer, 0, a.n_samples()), y = b.read_rows(layer, 0, b.n_samples());
    ASSERT_EQ(x.size(), y.size());
    size_t differing = 0;
    for (size_t i = 0; i < x.size(); ++i) differing += x[i] != y[i];
    EXPECT_EQ(differing, 0u) << "layer " << layer << ": values differ bit for bit";
  }
}

TEST_F(Extract, StoreHoldsTheModelsHiddenStatesAtTheRecordedPositions) {
  std::string out = dir_->file("single.h5");
  auto result = run_nla(extract_args(out));
  ASSERT_EQ(result.exit_status, 0) << result.err;
  store::ActivationStore acts(out);
  EXPECT_EQ(acts.layers(), (std::vector<int>{0, 2, 3}));
  ASSERT_GT(acts.n_samples(), 20);

  auto tok = tokenizer::Tokenizer::from_file(dir_->file("model"));
  EXPECT_EQ(acts.header().tokenizer_sha256, tok.sha256());
  auto net = model::Qwen2Model::load(dir_->file("model"));
  c10::NoGradGuard no_grad;
  double worst = 0;
  for (int64_t document = 0; document < acts.n_documents(); document += 4) {
    auto tokens = tok.encode(acts.document_text(document));
    tokens.resize(std::min<size_t>(tokens.size(), 200));
    model::ForwardInput input;
    input.input_ids = at::tensor(std::vector<int64_t>(tokens.begin(), tokens.end()), at::kLong).unsqueeze(0);
    model::ForwardOptions options;
    options.capture_layers = {0, 2, 3};
    options.compute_logits = false;
    auto output = net.forward(input, options);  // one unpadded sequence: the reference
    for (int64_t row = 0; row < acts.n_samples(); ++row) {
      if (acts.sample_document(row) != document) continue;
      int32_t position = acts.sample_position(row);
      ASSERT_GE(position, 20);
      ASSERT_EQ(acts.sample_token(row), tokens[position]);
      for (int layer : {0, 2, 3}) {
        auto stored = acts.read_rows(layer, row, 1);
        auto expected = output.captured.at(layer)[0][position];
        auto got = at::from_blob(stored.data(), {static_cast<int64_t>(stored.size())}, at::kFloat);
        double scale = expected.abs().max().item<double>();
        worst = std::max(worst, (got - expected).abs().max().item<double>() / scale);
      }
    }
  }
  // Batched with right padding vs one sequence alone: same math, different summation
  // lengths in attention; fp32 rounding stays far below 1e-5 of the row's scale.
  EXPECT_LT(worst, 1e-5);

  auto h5py = run_command(std::string(NLA_SYSTEM_PYTHON) + " " + repo_path("tests/tools/check_store_h5py.py") + " " + out);
  EXPECT_EQ(h5py.exit_status, 0) << h5py.out << h5py.err;
}

TEST_F(Extract, StoredRowsAgreeWithAFloat64NumpyForward) {
  std::string out = dir_->file("numpy.h5");
  ASSERT_EQ(run_nla(extract_args(out)).exit_status, 0);
  store::ActivationStore acts(out);
  auto tok = tokenizer::Tokenizer::from_file(dir_->file("model"));
  // Two documents through tests/tools/qwen2_numpy_ref.py (independent: numpy only).
  const std::vector<int64_t> documents = {1, 6};
  std::vector<std::vector<tokenizer::TokenId>> tokens;
  size_t longest = 0;
  for (int64_t document : documents) {
    tokens.push_back(tok.encode(acts.document_text(document)));
    tokens.back().resize(std::min<size_t>(tokens.back().size(), 200));
    longest = std::max(longest, tokens.back().size());
  }
  std::string ids = "[", mask = "[";
  for (size_t i = 0; i < tokens.size(); ++i) {  // right-padded
    ids += i ? ",[" : "[";
    mask += i ? ",[" : "[";
    for (size_t j = 0; j < longest; ++j) {
      ids += (j ? "," : "") + std::to_string(j < tokens[i].size() ? tokens[i][j] : 0);
      mask += (j ? "," : "") + std::string(j < tokens[i].size() ? "1" : "0");
    }
    ids += "]";
    mask += "]";
  }
  write_text(dir_->file("input.json"), "{\"input_ids\": " + ids + "], \"attention_mask\": " + mask + "]}");
  auto reference = run_command(std::string(NLA_SYSTEM_PYTHON) + " " + repo_path("tests/tools/qwen2_numpy_ref.py") +
                               " --model " + dir_->file("model") + " --input " + dir_->file("input.json") + " --out " +
                               dir_->file("ref.safetensors"));
  ASSERT_EQ(reference.exit_status, 0) << reference.err;
  io::SafetensorsFile ref(dir_->file("ref.safetensors"));
  int checked = 0;
  for (int layer : {0, 2, 3}) {
    const auto* info = ref.find("hidden." + std::to_string(layer));
    ASSERT_NE(info, nullptr);
    at::Tensor hidden = at::empty(info->shape, at::kDouble);  // (B, T, C) float64
    std::memcpy(hidden.data_ptr(), ref.data(*info), info->num_bytes());
    for (size_t i = 0; i < documents.size(); ++i) {
      for (int64_t row = 0; row < acts.n_samples(); ++row) {
        if (acts.sample_document(row) != documents[i]) continue;
        auto stored = acts.read_rows(layer, row, 1);
        auto got = at::from_blob(stored.data(), {static_cast<int64_t>(stored.size())}, at::kFloat).to(at::kDouble);
        auto expected = hidden[static_cast<int64_t>(i)][acts.sample_position(row)];
        double relative = (got - expected).abs().max().item<double>() / expected.abs().max().item<double>();
        // fp32 against float64 through 4 blocks: rounding stays near 1e-6; 1e-4 as for the model tests.
        EXPECT_LT(relative, 1e-4) << "layer " << layer << " row " << row;
        ++checked;
      }
    }
  }
  EXPECT_GE(checked, 12);
}

TEST_F(Extract, SameStoreOnOneTwoAndThreeRanks) {
  auto one = run_nla(extract_args(dir_->file("r1.h5")));
  ASSERT_EQ(one.exit_status, 0) << one.err;
  for (int ranks : {2, 3}) {
    std::string out = dir_->file("r" + std::to_string(ranks) + ".h5");
    auto result = run_command(kMpi + std::to_string(ranks) + " " + NLA_BINARY + " " + extract_args(out));
    ASSERT_EQ(result.exit_status, 0) << result.err;
    expect_same_stores(dir_->file("r1.h5"), out);
  }
}

TEST_F(Extract, KilledRunResumesToTheSameContent) {
  std::string reference = dir_->file("uninterrupted.h5"), out = dir_->file("killed.h5");
  ASSERT_EQ(run_nla(extract_args(reference)).exit_status, 0);
  auto killed = run_command(kMpi + "2 " + NLA_BINARY + " " + extract_args(out) + " --kill-after-batches 1");
  EXPECT_NE(killed.exit_status, 0);
  EXPECT_FALSE(fs::exists(out)) << "a killed run must not leave a complete-looking store";
  ASSERT_TRUE(fs::exists(out + ".partial"));
  auto resumed = run_command(kMpi + "2 " + NLA_BINARY + " " + extract_args(out));
  ASSERT_EQ(resumed.exit_status, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("(resuming)"), std::string::npos) << resumed.err;
  expect_same_stores(reference, out);
}

// A disk that fills during the run (simulated by a file-size limit, which nla turns from
// SIGXFSZ into a failed write): exit 1 with one line naming the file and the cause, no crash
// in finalisation, and a .partial that resumes to the same content once space is back.
TEST_F(Extract, FullDiskEndsWithOneLineAndResumes) {
  std::string reference = dir_->file("unlimited.h5"), out = dir_->file("full.h5");
  ASSERT_EQ(run_nla(extract_args(reference)).exit_status, 0);
  ASSERT_NE(run_command(kMpi + "2 " + NLA_BINARY + " " + extract_args(out) + " --kill-after-batches 1").exit_status, 0);
  ASSERT_TRUE(fs::exists(out + ".partial"));
  // The limit falls in the middle of the last layer's rows: a write reaching past it fails.
  const uint64_t size = fs::file_size(out + ".partial");
  const uint64_t last_layer_bytes = [&] {
    store::ActivationStore store(reference);
    return static_cast<uint64_t>(store.n_samples() * store.hidden_size()) * sizeof(float);
  }();
  const uint64_t limit_kb = (size - last_layer_bytes / 2) / 1024;
  // The limit is set inside each rank (the launcher's own shared-memory files must not meet
  // it), and the ranks talk over TCP for the same reason.
  auto full = run_command(kMpi + "2 --mca btl self,tcp sh -c 'ulimit -f " + std::to_string(limit_kb) + " && exec " +
                          NLA_BINARY + " " + extract_args(out) + "'");
  EXPECT_EQ(full.exit_status, 1) << full.err;
  // Open MPI's own I/O layer may print a line per failed write before nla's one line.
  const auto line_at = full.err.find("nla extract: error: " + out + ".partial: writing layer ");
  ASSERT_NE(line_at, std::string::npos) << full.err;
  const std::string line = full.err.substr(line_at, full.err.find('\n', line_at) - line_at);
  // The cause: the system's (File too large) on a plain write; HDF5's own words when the write
  // went through the checksum filter, which rewrites whole chunks and loses errno.
  EXPECT_TRUE(line.find(" failed: File too large; the documents written before are kept") != std::string::npos ||
              line.find(" failed: file write failed; the documents written before are kept") != std::string::npos)
      << line;
  EXPECT_EQ(full.err.find("nla extract:", line_at + 1), std::string::npos) << full.err;
  EXPECT_EQ(full.err.find("MPI_ABORT"), std::string::npos) << full.err;
  EXPECT_EQ(full.err.find("ERROR on rank"), std::string::npos) << full.err;
  EXPECT_FALSE(fs::exists(out));
  ASSERT_TRUE(fs::exists(out + ".partial"));

  auto resumed = run_command(kMpi + "2 " + NLA_BINARY + " " + extract_args(out));
  ASSERT_EQ(resumed.exit_status, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("(resuming)"), std::string::npos) << resumed.err;
  expect_same_stores(reference, out);
}

// A flipped bit inside a layer's stored rows: with checksums (the default) reading those rows
// is an input error naming the store and the layer; without them the read returns the
// changed value silently (what stores were before).
TEST_F(Extract, ChecksumsCatchAFlippedBit) {
  // Flips one bit in the middle of layer 2's first chunk, found by h5py (an independent reader).
  auto flip = [&](const std::string& path) {
    const std::string script =
        "import h5py, sys\n"
        "with h5py.File(sys.argv[1], 'r') as f:\n"
        "    info = f['layers/2/acts'].id.get_chunk_info(0)\n"
        "    checked = f['layers/2/acts'].fletcher32\n"
        "with open(sys.argv[1], 'r+b') as f:\n"
        "    f.seek(info.byte_offset + info.size // 2)\n"
        "    byte = f.read(1)[0]\n"
        "    f.seek(info.byte_offset + info.size // 2)\n"
        "    f.write(bytes([byte ^ 0x10]))\n"
        "print(checked)\n";
    write_text(dir_->file("flip.py"), script);
    return run_command(std::string(NLA_SYSTEM_PYTHON) + " " + dir_->file("flip.py") + " " + path);
  };
  for (bool checksums : {true, false}) {
    SCOPED_TRACE(checksums ? "checksums" : "no checksums");
    const std::string out = dir_->file(checksums ? "checked.h5" : "unchecked.h5");
    auto run = run_nla(extract_args(out) + (checksums ? "" : " --checksums=false"));
    ASSERT_EQ(run.exit_status, 0) << run.err;
    std::vector<float> before = store::ActivationStore(out).read_rows(2, 0, store::ActivationStore(out).n_samples());
    EXPECT_EQ(store::ActivationStore(out).header().checksums, checksums);
    auto flipped = flip(out);
    ASSERT_EQ(flipped.exit_status, 0) << flipped.err;
    EXPECT_EQ(flipped.out, checksums ? "True\n" : "False\n");
    store::ActivationStore store(out);
    if (checksums) {
      try {
        store.read_rows(2, 0, store.n_samples());
        ADD_FAILURE() << "the flipped bit was read without an error";
      } catch (const InputError& error) {
        const std::string message = error.what();
        EXPECT_NE(message.find(out + ": layer 2, rows 0-"), std::string::npos) << message;
        EXPECT_NE(message.find("cannot be read"), std::string::npos) << message;
      }
      EXPECT_NO_THROW(store.read_rows(0, 0, store.n_samples()));  // the other layers are intact
    } else {
      std::vector<float> after = store.read_rows(2, 0, store.n_samples());
      EXPECT_NE(before, after);  // changed, and nothing said so
    }
  }
}

TEST_F(Extract, BadInputExitsTwoWithOneLine) {
  auto beyond = run_nla(extract_args(dir_->file("x.h5")) + " --layers 4");
  EXPECT_EQ(beyond.exit_status, 2);
  EXPECT_EQ(beyond.err, "nla extract: option 'layers': layer 4 is outside the model (got '4'; the model has layers 0-3; "
                        "expected e.g. 20, 0-27, 1,5,9-11 or all)\n");
  write_text(dir_->file("notext.jsonl"), "{\"body\": \"a\"}\n{\"body\": \"b\"}\n");
  auto no_text = run_nla("extract --model " + dir_->file("model") + " --corpus " + dir_->file("notext.jsonl") +
                         " --out " + dir_->file("y.h5"));
  EXPECT_EQ(no_text.exit_status, 2);
  EXPECT_NE(no_text.err.find("notext.jsonl"), std::string::npos) << no_text.err;
  EXPECT_NE(no_text.err.find("text"), std::string::npos) << no_text.err;
  EXPECT_EQ(std::count(no_text.err.begin(), no_text.err.end(), '\n'), 1) << no_text.err;
  EXPECT_FALSE(fs::exists(dir_->file("y.h5")));

  ASSERT_EQ(run_nla(extract_args(dir_->file("exists.h5"))).exit_status, 0);
  auto again = run_nla(extract_args(dir_->file("exists.h5")));
  EXPECT_EQ(again.exit_status, 2);
  EXPECT_NE(again.err.find("pass --overwrite"), std::string::npos) << again.err;
  EXPECT_EQ(run_nla(extract_args(dir_->file("exists.h5")) + " --overwrite").exit_status, 0);
}

// doc-stride with two offsets: disjoint documents (the main job's held-out store), and an
// offset outside [0, stride) is refused.
TEST_F(Extract, DocOffsetsGiveDisjointDocuments) {
  auto args = [&](const std::string& out, int offset) {
    return "extract --model " + dir_->file("model") + " --corpus " + repo_path("data/corpus") +
           " --max-docs 20 --doc-stride 4 --doc-offset " + std::to_string(offset) +
           " --layers 0 --positions-per-doc 2 --min-position 8 --max-tokens 64 --batch-docs 4 --threads 1 --out " + out;
  };
  ASSERT_EQ(run_nla(args(dir_->file("off0.h5"), 0)).exit_status, 0);
  ASSERT_EQ(run_nla(args(dir_->file("off1.h5"), 1)).exit_status, 0);
  store::ActivationStore a(dir_->file("off0.h5")), b(dir_->file("off1.h5"));
  ASSERT_EQ(a.n_documents(), 5);
  ASSERT_EQ(b.n_documents(), 5);
  for (int64_t i = 0; i < a.n_documents(); ++i)
    for (int64_t j = 0; j < b.n_documents(); ++j) EXPECT_NE(a.document_text(i), b.document_text(j)) << i << " " << j;
  auto bad = run_nla(args(dir_->file("off4.h5"), 4));
  EXPECT_EQ(bad.exit_status, 2);
  EXPECT_NE(bad.err.find("option 'doc-offset'"), std::string::npos) << bad.err;
}

TEST(ExtractUnits, LayerLists) {
  EXPECT_EQ(model::parse_layer_list("all", 3, "layers"), (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(model::parse_layer_list("5,1-3,2", 28, "layers"), (std::vector<int>{1, 2, 3, 5}));
  EXPECT_THROW(model::parse_layer_list("28", 28, "layers"), InputError);
  EXPECT_THROW(model::parse_layer_list("3-1", 28, "layers"), InputError);
  EXPECT_THROW(model::parse_layer_list("x", 28, "layers"), InputError);
  EXPECT_THROW(model::parse_layer_list("", 28, "layers"), InputError);
}

TEST(ExtractUnits, PositionsDependOnSeedAndIdOnlyAndAvoidSpecialTokens) {
  auto tok = tokenizer::Tokenizer::from_file(repo_path("models/tokenizer.json"));
  auto tokens = tok.encode(std::string(300, 'a') + " <|endoftext|> " + std::string(200, 'b') + " word word word");
  auto first = extract::sample_positions(tokens, tok, 10, 5, 7, "doc-1");
  EXPECT_EQ(first, extract::sample_positions(tokens, tok, 10, 5, 7, "doc-1"));
  EXPECT_NE(first, extract::sample_positions(tokens, tok, 10, 5, 7, "doc-2"));
  EXPECT_NE(first, extract::sample_positions(tokens, tok, 10, 5, 8, "doc-1"));
  ASSERT_EQ(first.size(), 10u);
  EXPECT_TRUE(std::is_sorted(first.begin(), first.end()));
  for (int32_t position : first) {
    EXPECT_GE(position, 5);
    EXPECT_FALSE(tok.is_special(tokens[position]));
  }
  // Every eligible position when the document has fewer than asked for.
  auto all = extract::sample_positions(tokens, tok, 100000, 5, 7, "doc-1");
  EXPECT_EQ(all.size(), tokens.size() - 5 - 1);  // one special token excluded
}

}  // namespace
}  // namespace nla::test
