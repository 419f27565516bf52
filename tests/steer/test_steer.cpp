// nla steer-vector and nla steer-audit on the tiny model: the vector against a numpy mean
// difference of `nla extract` outputs, both commands the same on 1 and 2 ranks, the audit's
// layout and what steering must do to its numbers (tests/tools/check_steer_audit.py), the
// report script on a real run, and bad inputs as one line with exit 2. The AV here is the
// untrained base model (its answers fail: the NaN path); the learning check with a trained
// AV is in tests/pipeline/test_learning.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include "nla/autoencoder/checkpoint.hpp"
#include "nla/core/error.hpp"
#include "nla/autoencoder/reconstructor.hpp"
#include "nla/io/safetensors.hpp"
#include "nla/model/qwen2.hpp"
#include "nla/steer/audit.hpp"
#include "test_support.hpp"

namespace nla::test {
namespace {

std::string mpirun(int ranks) { return std::string(NLA_MPIEXEC) + " -n " + std::to_string(ranks) + " " + NLA_BINARY + " "; }

void write_texts(const std::string& path, const std::vector<std::string>& texts) {
  std::ofstream out(path);
  for (const auto& text : texts) out << nlohmann::json{{"text", text}}.dump() << "\n";
}

// nla's own lines on stderr ("nla <command>: ..."): the launcher may add its summary after
// them (Open MPI reports a rank's non-zero exit), which is not nla's to print.
std::vector<std::string> nla_lines(const std::string& err, const std::string& command) {
  std::istringstream in(err);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);)
    if (line.rfind("nla " + command + ":", 0) == 0) lines.push_back(line);
  return lines;
}

void expect_one_line(const CommandResult& run, const std::string& command, const std::string& wanted) {
  EXPECT_EQ(run.exit_status, 2) << run.err;
  const auto lines = nla_lines(run.err, command);
  ASSERT_EQ(lines.size(), 1u) << run.err;
  EXPECT_NE(lines[0].find(wanted), std::string::npos) << run.err;
  EXPECT_EQ(run.err.find("ERROR on rank"), std::string::npos) << run.err;
  EXPECT_EQ(run.err.find("MPI_ABORT"), std::string::npos) << run.err;
}

class Steer : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    auto init = run_nla("init-model --preset tiny --seed 3 --tokenizer " + repo_path("models/tokenizer.json") +
                        " --out " + dir_->file("model") + " --log-level warn");
    ASSERT_EQ(init.exit_status, 0) << init.err;
    write_texts(dir_->file("positive.jsonl"),
                {"The cat sat on the warm windowsill and purred.", "My cat chases mice in the garden at night.",
                 "Cats sleep for most of the day.", "A kitten played with a ball of yarn.",
                 "The cat's whiskers twitched as it watched the bird.", "She adopted two cats from the shelter."});
    write_texts(dir_->file("negative.jsonl"),
                {"The car sat in the warm garage all day.", "My car needs new tires before winter.",
                 "Cars are parked along the street.", "A truck drove past the old station.",
                 "The engine roared as the driver pressed the pedal.", "She bought a used car from a dealer."});
    write_texts(dir_->file("prompts.jsonl"), {"Once upon a time", "The weather today is", "In the kitchen, we",
                                              "Scientists have found that", "My favourite animal is"});
    // The AV and AR: the base model with NLA metadata (untrained), reading layer 1.
    auto base = model::Qwen2Model::load(dir_->file("model"));
    autoencoder::save_av(base, autoencoder::NlaMeta::defaults("av", 64, 1, 8.0), dir_->file("av"), dir_->file("model"));
    auto ar = autoencoder::Reconstructor::from_base(dir_->file("model"), 1);
    autoencoder::save_ar(ar, autoencoder::NlaMeta::defaults("ar", 64, 1, 8.0), dir_->file("ar"), dir_->file("model"));
  }
  static void TearDownTestSuite() { delete dir_; }

  static std::string vector_args(const std::string& token, const std::string& out) {
    return "steer-vector --model " + dir_->file("model") + " --positive " + dir_->file("positive.jsonl") +
           " --negative " + dir_->file("negative.jsonl") + " --layer 1 --token " + token +
           " --batch 4 --threads 1 --log-level warn --out " + out;
  }
  static std::string audit_args(const std::string& out, const std::string& extra = "") {
    return "steer-audit --model " + dir_->file("model") + " --av " + dir_->file("av") + " --ar " + dir_->file("ar") +
           " --vector " + dir_->file("v_last.safetensors") + " --prompts " + dir_->file("prompts.jsonl") +
           " --scales 1,4 --concept-words cat,kitten --positions-per-prompt 3 --max-new-tokens 6"
           " --av-max-new-tokens 6 --batch 2 --seed 4 --threads 1 --log-level warn --out " + out + " " + extra;
  }
  static TempDir* dir_;
};
TempDir* Steer::dir_ = nullptr;

TEST(SteerWords, MentionsAreWholeWordsCaseInsensitive) {
  EXPECT_TRUE(steer::mentions_word("A Cat on a mat", {"cat"}));
  EXPECT_TRUE(steer::mentions_word("'cat'", {"dog", "cat"}));
  EXPECT_FALSE(steer::mentions_word("concatenate", {"cat"}));
  EXPECT_FALSE(steer::mentions_word("cats", {"cat"}));
  EXPECT_TRUE(steer::mentions_word("the (cat).", {"CAT"}));
  EXPECT_FALSE(steer::mentions_word("anything", {}));
}

TEST(SteerScales, ZeroAddedSortedAndChecked) {
  EXPECT_EQ(steer::parse_scales("4,1,2"), (std::vector<double>{0, 1, 2, 4}));
  EXPECT_EQ(steer::parse_scales("0,0.5,0.5"), (std::vector<double>{0, 0.5}));
  for (const char* bad : {"1,nan", "inf", "-1", "1,,2", "x", "0"}) EXPECT_THROW(steer::parse_scales(bad), InputError) << bad;
}

// v against numpy on extract stores of the same texts (every position stored), both token
// modes; the 2-rank file equals the 1-rank file byte for byte (one thread per rank: the
// arithmetic of a batch then depends on nothing else).
TEST_F(Steer, VectorEqualsTheNumpyMeanDifferenceOfExtractOutputs) {
  const std::string extract = " --layers 1 --positions-per-doc 100000 --min-position 0 --max-tokens 512"
                              " --batch-docs 4 --seed 0 --log-level warn";
  for (const char* set : {"positive", "negative"}) {
    auto run = run_nla("extract --model " + dir_->file("model") + " --corpus " + dir_->file(std::string(set) + ".jsonl") +
                       extract + " --out " + dir_->file(std::string(set) + ".h5"));
    ASSERT_EQ(run.exit_status, 0) << run.err;
  }
  for (const std::string token : {"last", "mean"}) {
    SCOPED_TRACE(token);
    const std::string one = dir_->file("v_" + token + ".safetensors"), two = dir_->file("v2_" + token + ".safetensors");
    auto a = run_command(mpirun(1) + vector_args(token, one));
    ASSERT_EQ(a.exit_status, 0) << a.err;
    auto b = run_command(mpirun(2) + vector_args(token, two));
    ASSERT_EQ(b.exit_status, 0) << b.err;
    auto check = run_command(std::string(NLA_SYSTEM_PYTHON) + " " + repo_path("tests/tools/steer_vector_ref.py") +
                             " --positive " + dir_->file("positive.h5") + " --negative " + dir_->file("negative.h5") +
                             " --layer 1 --token " + token + " --min-position 1 --vector " + one);
    std::cout << check.out;
    EXPECT_EQ(check.exit_status, 0) << check.out << check.err;
    io::SafetensorsFile fa(one), fb(two);
    const auto* va = fa.find("vector");
    const auto* vb = fb.find("vector");
    ASSERT_TRUE(va && vb);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(fa.data(*va)), va->num_bytes()),
              std::string(reinterpret_cast<const char*>(fb.data(*vb)), vb->num_bytes()));
    EXPECT_EQ(fa.header().metadata.at("median_norm"), fb.header().metadata.at("median_norm"));
    EXPECT_EQ(fa.header().metadata.at("layer"), "1");
    EXPECT_NE(fa.header().metadata.at("provenance").find("steer-vector"), std::string::npos);
  }
}

// One and two ranks give the same audit; its layout and numbers pass the independent
// checks; the report script reads it.
TEST_F(Steer, AuditIsTheSameOnAnyRankCountAndReadsBack) {
  if (!std::ifstream(dir_->file("v_last.safetensors")).good()) {
    auto v = run_nla(vector_args("last", dir_->file("v_last.safetensors")));
    ASSERT_EQ(v.exit_status, 0) << v.err;
  }
  auto one = run_command(mpirun(1) + audit_args(dir_->file("audit1")));
  ASSERT_EQ(one.exit_status, 0) << one.err;
  auto two = run_command(mpirun(2) + audit_args(dir_->file("audit2")));
  ASSERT_EQ(two.exit_status, 0) << two.err;
  const std::string python = std::string(NLA_SYSTEM_PYTHON) + " ";
  auto check = run_command(python + repo_path("tests/tools/check_steer_audit.py") + " " + dir_->file("audit2"));
  std::cout << check.out;
  EXPECT_EQ(check.exit_status, 0) << check.out << check.err;
  auto same = run_command(python + repo_path("tests/tools/check_steer_audit.py") + " " + dir_->file("audit1") + " " +
                          dir_->file("audit2"));
  EXPECT_EQ(same.exit_status, 0) << same.out << same.err;
  for (const char* file : {"summary.csv", "config.ini", "provenance.json"})
    EXPECT_TRUE(std::ifstream(dir_->file(std::string("audit2/") + file)).good()) << file;
  auto report = run_command(python + repo_path("analysis/nla_steer_report.py") + " " + dir_->file("audit2"));
  EXPECT_EQ(report.exit_status, 0) << report.out << report.err;
  EXPECT_TRUE(std::ifstream(dir_->file("audit2/report/steer_report.md")).good());
  // An existing audit is not replaced without --overwrite.
  expect_one_line(run_command(mpirun(2) + audit_args(dir_->file("audit2"))), "steer-audit", "pass --overwrite");
}

// Bad input: exit 2 and one line naming what is wrong, printed once on 2 ranks.
TEST_F(Steer, BadInputIsOneLine) {
  if (!std::ifstream(dir_->file("v_last.safetensors")).good()) {
    auto v = run_nla(vector_args("last", dir_->file("v_last.safetensors")));
    ASSERT_EQ(v.exit_status, 0) << v.err;
  }
  std::vector<float> short_vector(10, 1.0f);
  io::write_safetensors(dir_->file("short.safetensors"),
                        {io::TensorBytes{"vector", io::DType::F32, {10}, short_vector.data(), 40}});
  write_text(dir_->file("empty.jsonl"), "");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--vector " + dir_->file("short.safetensors"), "expected [64]"},
      {"--layer 9", "option 'layer': expected 0..3"},
      {"--prompts " + dir_->file("empty.jsonl"), "empty.jsonl"},
      {"--scales 1,nan", "option 'scales'"},
      {"--scales 2,-1", "option 'scales'"},
  };
  for (const auto& [extra, wanted] : cases) {
    SCOPED_TRACE(extra);
    expect_one_line(run_command(mpirun(2) + audit_args(dir_->file("bad"), extra)), "steer-audit", wanted);
    EXPECT_FALSE(std::ifstream(dir_->file("bad/audit.h5")).good());
  }
  expect_one_line(run_command(mpirun(2) + vector_args("last", dir_->file("bad.safetensors")) + " --layer 7"),
                  "steer-vector", "option 'layer': expected 0..3");
}

}  // namespace
}  // namespace nla::test
