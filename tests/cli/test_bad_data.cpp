// Nothing silently wrong (issue 21): non-finite activations, weights and checkpoint
// statistics are refused where they enter, with one line naming the file and what is bad
// (exit 2); output that cannot be written is a failure (exit 1), not a success.
// Every case here passed silently (exit 0) before the checks existed.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "nla/core/fs.hpp"
#include "test_support.hpp"

namespace nla::test {
namespace {


class BadData : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    auto init = run_nla("init-model --preset tiny --seed 3 --tokenizer " + repo_path("models/tokenizer.json") +
                        " --out " + dir_->file("model"));
    ASSERT_EQ(init.exit_status, 0) << init.err;
    auto extract = run_nla(extract_line(dir_->file("model"), dir_->file("acts.h5")));
    ASSERT_EQ(extract.exit_status, 0) << extract.err;
    auto label = run_nla("label --store " + dir_->file("acts.h5"));
    ASSERT_EQ(label.exit_status, 0) << label.err;
    // One-step AV and AR: enough to load and run; their quality does not matter here.
    for (const char* stage : {"train-av", "train-ar"}) {
      auto train = run_nla(std::string(stage) + " --store " + dir_->file("acts.h5") + " --layer 1 --model " +
                           dir_->file("model") + " --out " + dir_->file(stage) +
                           " --steps 1 --batch 4 --eval-every 0 --max-eval-samples 4 --validation-fraction 0.25 --threads 1");
      ASSERT_EQ(train.exit_status, 0) << train.err;
    }
    // The same store with NaN in row 5 and Inf in row 9 of layer 1.
    ASSERT_EQ(run_command("cp " + dir_->file("acts.h5") + " " + dir_->file("nan.h5")).exit_status, 0);
    auto poison = run_command(std::string(NLA_SYSTEM_PYTHON) + " -c \"import h5py; f = h5py.File('" +
                              dir_->file("nan.h5") + "', 'r+'); a = f['layers/1/acts']; a[5, 3] = float('nan');" +
                              " a[9, 0] = float('inf')\"");
    ASSERT_EQ(poison.exit_status, 0) << poison.err;
    // The model with one NaN in its first block's norm (read by every command, extract included).
    ASSERT_EQ(run_command("cp -r " + dir_->file("model") + " " + dir_->file("nan_model")).exit_status, 0);
    auto poison_model = run_command(
        std::string(NLA_SYSTEM_PYTHON) + " -c \"import json, struct; p = '" +
        dir_->file("nan_model/model.safetensors") +
        "'; f = open(p, 'r+b'); n = struct.unpack('<Q', f.read(8))[0]; t = json.loads(f.read(n))['model.layers.0.input_layernorm.weight'];"
        " f.seek(8 + n + t['data_offsets'][0] + 4 * 7); f.write(struct.pack('<f', float('nan')))\"");
    ASSERT_EQ(poison_model.exit_status, 0) << poison_model.err;
  }
  static void TearDownTestSuite() { delete dir_; }

  static std::string extract_line(const std::string& model, const std::string& out) {
    return "extract --model " + model + " --corpus " + repo_path("data/corpus") +
           " --max-docs 40 --doc-stride 2 --layers 1 --positions-per-doc 4 --min-position 16 --max-tokens 96"
           " --batch-docs 4 --seed 0 --threads 1 --out " + out;
  }
  // The error is one line, the last, naming what is wanted; before it at most the run's
  // banner (commands that find the bad rows while reading them have announced the run).
  static std::string last_line(const std::string& err) {
    const auto start = err.size() < 2 ? std::string::npos : err.rfind('\n', err.size() - 2);
    return err.substr(start == std::string::npos ? 0 : start + 1);
  }
  static void expect_one_line(const CommandResult& result, int status, const std::string& wanted) {
    EXPECT_EQ(result.exit_status, status) << result.err;
    const std::string& err = result.err;
    const std::string last = last_line(err);
    EXPECT_NE(last.find(wanted), std::string::npos) << "expected '" << wanted << "' in the last line of: " << err;
    const std::string before = err.substr(0, err.size() - last.size());
    if (!before.empty()) EXPECT_EQ(before.rfind("nla ", 0), 0u) << "only the banner may come first: " << err;
    for (const char* noise : {"ERROR", "error:", "Error", "failed"})
      EXPECT_EQ(before.find(noise), std::string::npos) << err;
  }
  static TempDir* dir_;
};
TempDir* BadData::dir_ = nullptr;

// Every reader of store rows: the trainers, verbalize and eval.
TEST_F(BadData, NonFiniteStoreRowsAreRefusedByEveryReader) {
  const std::string store = dir_->file("nan.h5");
  const std::string named = store + ": layer 1, row ";
  for (const char* stage : {"train-ar", "train-av"}) {
    auto train = run_nla(std::string(stage) + " --store " + store + " --layer 1 --model " + dir_->file("model") +
                         " --out " + dir_->file(std::string("nan_") + stage) + " --steps 2 --batch 4 --threads 1");
    expect_one_line(train, 2, named);
    EXPECT_NE(train.err.find("expected finite activations"), std::string::npos) << train.err;
    EXPECT_FALSE(fs::exists(dir_->file(std::string("nan_") + stage) + (stage == std::string("train-ar") ? "/ar" : "/av")));
  }
  auto verbalize = run_nla("verbalize --av " + dir_->file("train-av/av") + " --store " + store +
                           " --samples 4,5,6 --max-new-tokens 4 --threads 1");
  expect_one_line(verbalize, 2, store + ": layer 1, row 5, dimension 3: value nan");
  EXPECT_EQ(verbalize.out, "");
  auto inf_row = run_nla("verbalize --av " + dir_->file("train-av/av") + " --store " + store +
                         " --samples 9 --max-new-tokens 4 --threads 1");
  expect_one_line(inf_row, 2, store + ": layer 1, row 9, dimension 0: value inf");
  auto eval = run_nla("eval --av " + dir_->file("train-av/av") + " --ar " + dir_->file("train-ar/ar") + " --store " +
                      store + " --layers 1 --samples 12 --pool 12 --max-new-tokens 4 --threads 1 --out " +
                      dir_->file("nan_eval"));
  expect_one_line(eval, 2, named);
  EXPECT_FALSE(fs::exists(dir_->file("nan_eval/results.h5")));
  // The clean rows of the same store still read: the check is per read, not per file.
  auto clean = run_nla("verbalize --av " + dir_->file("train-av/av") + " --store " + store +
                       " --samples 4,6 --max-new-tokens 4 --threads 1");
  EXPECT_EQ(clean.exit_status, 0) << clean.err;
}

TEST_F(BadData, NonFiniteWeightsAreRefusedAtLoad) {
  const std::string wanted = dir_->file("nan_model/model.safetensors") + ": tensor 'model.layers.0.input_layernorm.weight': element 7 is nan";
  expect_one_line(run_nla("generate --model " + dir_->file("nan_model") + " --prompt hello --max-new-tokens 2"), 2,
                  wanted);
  const std::string out = dir_->file("nan_model_acts.h5");
  expect_one_line(run_nla(extract_line(dir_->file("nan_model"), out)), 2, wanted);
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(BadData, NonFiniteCheckpointStatisticsAreRefused) {
  ASSERT_EQ(run_command("cp -r " + dir_->file("train-ar/ar") + " " + dir_->file("nan_ar")).exit_status, 0);
  const std::string meta = dir_->file("nan_ar/nla_meta.yaml");
  ASSERT_EQ(run_command("sed -i 's/^  var_nrm: .*/  var_nrm: .nan/' " + meta).exit_status, 0);
  ASSERT_NE(read_text(meta).find("var_nrm: .nan"), std::string::npos) << read_text(meta);
  write_text(dir_->file("one.jsonl"), "{\"description\": \"hello\"}\n");
  expect_one_line(run_nla("reconstruct --ar " + dir_->file("nan_ar") + " --descriptions " + dir_->file("one.jsonl") +
                          " --out " + dir_->file("one.npy")),
                  2, meta + ": key 'extraction.var_nrm': expected a finite value >= 0, got nan");
}

// A truncated store (a copy cut at half its size) is not a readable store: exit 2 naming it,
// from each stage that opens one, without HDF5's source text.
TEST_F(BadData, TruncatedStoreIsOneLineNamingTheFile) {
  const std::string cut = dir_->file("cut.h5");
  ASSERT_EQ(run_command("head -c $(( $(stat -c %s " + dir_->file("acts.h5") + ") / 2 )) " + dir_->file("acts.h5") +
                        " > " + cut).exit_status, 0);
  const std::string wanted = cut + ": cannot be opened as an HDF5 file (truncated or damaged?)";
  auto train = run_nla("train-ar --store " + cut + " --layer 1 --model " + dir_->file("model") + " --out " +
                       dir_->file("cut_run") + " --steps 1");
  expect_one_line(train, 2, wanted);
  expect_one_line(run_nla("label --store " + cut), 2, cut);
  auto eval = run_nla("eval --av " + dir_->file("train-av/av") + " --ar " + dir_->file("train-ar/ar") + " --store " +
                      cut + " --layers 1 --out " + dir_->file("cut_eval"));
  expect_one_line(eval, 2, wanted);
  for (const auto* result : {&train, &eval}) EXPECT_EQ(result->err.find("c_str()"), std::string::npos) << result->err;
}

// Input errors in a multi-rank extraction: one line from rank 0 (not one per rank, nor the
// launcher's abort block), and no output file left behind.
TEST_F(BadData, ExtractInputErrorsAreOneLineOnTwoRanks) {
  const std::string launch = "OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1 " +
                             std::string(MPIEXEC) + " 2 " + NLA_BINARY + " ";
  struct Case {
    std::string arguments, wanted;
  };
  const std::string out = dir_->file("two_ranks.h5");
  const std::vector<Case> cases = {
      {extract_line(dir_->file("no_such_model"), out), dir_->file("no_such_model")},
      {extract_line(dir_->file("nan_model"), out), "tensor 'model.layers.0.input_layernorm.weight': element 7 is nan"},
      {extract_line(dir_->file("model"), out) + " --positions-per-doc 0", "option 'positions-per-doc': expected >= 1"},
      {extract_line(dir_->file("model"), out) + " --layers 9", "layers"},
  };
  for (const auto& item : cases) {
    auto result = run_command(launch + item.arguments);
    EXPECT_EQ(result.exit_status, 2) << item.arguments << "\n" << result.err;
    EXPECT_EQ(result.err.rfind("nla extract: ", 0), 0u) << result.err;  // the launcher may add a notice after it
    EXPECT_NE(result.err.find(item.wanted), std::string::npos) << result.err;
    size_t lines_from_nla = 0;
    for (size_t at = result.err.find("nla extract: "); at != std::string::npos; at = result.err.find("nla extract: ", at + 1))
      ++lines_from_nla;
    EXPECT_EQ(lines_from_nla, 1u) << result.err;
    EXPECT_EQ(result.err.find("ERROR on rank"), std::string::npos) << result.err;
    EXPECT_EQ(result.err.find("MPI_ABORT"), std::string::npos) << result.err;
    EXPECT_FALSE(fs::exists(out)) << item.arguments;
    EXPECT_FALSE(fs::exists(out + ".partial")) << item.arguments;
  }
}

// Output lost to a full device is an error (exit 1, the run's last line), not a success.
TEST_F(BadData, UnwritableStandardOutputFails) {
  auto generate = run_command(std::string(NLA_BINARY) + " generate --model " + dir_->file("model") +
                              " --prompt hello --max-new-tokens 2 > /dev/full");
  EXPECT_EQ(generate.exit_status, 1) << generate.err;
  EXPECT_EQ(last_line(generate.err).rfind("nla generate: error: writing to standard output failed", 0), 0u)
      << generate.err;
  auto verbalize = run_command(std::string(NLA_BINARY) + " verbalize --av " + dir_->file("train-av/av") + " --store " +
                               dir_->file("acts.h5") + " --samples 0 --max-new-tokens 4 --threads 1 > /dev/full");
  EXPECT_EQ(verbalize.exit_status, 1) << verbalize.err;
  EXPECT_EQ(last_line(verbalize.err).rfind("nla verbalize: error: writing to standard output failed", 0), 0u)
      << verbalize.err;
}

}  // namespace
}  // namespace nla::test
