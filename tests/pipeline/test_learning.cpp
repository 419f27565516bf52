// The pipeline learns, on the tiny model: an AV trained by `nla train-av` reads its injected
// vector, so in `nla eval` at the anchor layer `av` beats `random` (and `shuffled`) on cosine.
//
// Fixture (about 7 minutes on 2 cores; the AV SFT is most of it): the demo's recipe (README, "The
// demo's tiny AV": init-model --embedding-std 0.5, frozen AV embeddings, anchor layer 2) on
// the demo's training and held-out documents, with one change that makes it affordable in CI:
// the gold description names only the current token (`<explanation>\n'tok'\n</explanation>`,
// 8 answer tokens instead of the context labeler's ~22), and AV batches of 32 for 1000 steps.
// Measured: this fixture gives, at layer 2 on 200 held-out rows, mean cosine av 0.072,
// random 0.026, shuffled 0.028 (deterministic for a given machine: seeds fixed, one thread
// per rank). The same recipe run by hand (validation every 100 steps, token strings taken
// from the context labeler) gave av 0.145, random -0.001: how far the greedy answer follows
// the vector varies from run to run, while the vector gain does not (0.25-0.30 nats/token
// by step 500-700). With 600 AV steps it was not enough (av 0.061, random 0.076).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>

#include "test_support.hpp"
#include "token_descriptions.hpp"

namespace nla::test {
namespace {

std::string mpirun(int ranks) {
  return std::string(NLA_MPIEXEC) + " -n " + std::to_string(ranks) + " " + NLA_BINARY + " ";
}

// summary.csv -> mean of (layer, condition, metric).
std::map<std::string, double> summary_means(const std::string& path) {
  std::ifstream in(path);
  std::map<std::string, double> means;
  std::string line;
  std::getline(in, line);  // layer,condition,metric,mean,median,std,n
  while (std::getline(in, line)) {
    std::stringstream fields(line);
    std::string layer, condition, metric, mean;
    std::getline(fields, layer, ',');
    std::getline(fields, condition, ',');
    std::getline(fields, metric, ',');
    std::getline(fields, mean, ',');
    means[layer + "/" + condition + "/" + metric] = std::stod(mean);
  }
  return means;
}

class Learning : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    auto init = run_nla("init-model --preset tiny --seed 1 --embedding-std 0.5 --tokenizer " +
                        repo_path("models/tokenizer.json") + " --out " + dir_->file("model") + " --log-level warn");
    ASSERT_EQ(init.exit_status, 0) << init.err;
    const std::string extract = "extract --model " + dir_->file("model") + " --corpus " + repo_path("data/corpus") +
                                " --layers 2 --positions-per-doc 4 --min-position 32 --max-tokens 256 --batch-docs 8"
                                " --seed 0 --threads 2 --log-level warn --doc-stride 10 ";
    auto train_docs = run_nla(extract + "--out " + dir_->file("acts.h5"));
    ASSERT_EQ(train_docs.exit_status, 0) << train_docs.err;
    auto held_out = run_nla(extract + "--doc-offset 5 --max-docs 1000 --out " + dir_->file("held_out.h5"));
    ASSERT_EQ(held_out.exit_status, 0) << held_out.err;
    write_token_descriptions(dir_->file("acts.h5"), dir_->file("model"));  // gold: the token at the position
    const std::string common = " --store " + dir_->file("acts.h5") + " --model " + dir_->file("model") +
                               " --layer 2 --lr-min 1e-3 --eval-every 0 --seed 0 --log-level warn";
    auto ar = run_command(mpirun(2) + "train-ar" + common + " --out " + dir_->file("train_ar") +
                          " --steps 300 --batch 16 --lr-max 5e-3 --lr-warmup-steps 10");
    ASSERT_EQ(ar.exit_status, 0) << ar.err;
    auto av = run_command(mpirun(2) + "train-av" + common + " --out " + dir_->file("train_av") +
                          " --steps 1000 --batch 32 --lr-max 3e-3 --lr-warmup-steps 20 --freeze-embeddings");
    ASSERT_EQ(av.exit_status, 0) << av.err;
  }
  static void TearDownTestSuite() { delete dir_; }

  static std::string eval_args(const std::string& av, const std::string& ar, const std::string& out) {
    return "eval --av " + av + " --ar " + ar + " --model " + dir_->file("model") + " --store " +
           dir_->file("held_out.h5") + " --layers 2 --samples 200 --batch 25 --max-new-tokens 16 --pool 50 --seed 0"
           " --log-level warn --out " + out;
  }
  static TempDir* dir_;
};
TempDir* Learning::dir_ = nullptr;

TEST_F(Learning, TrainedAvBeatsRandomAtTheAnchorLayer) {
  const std::string run = dir_->file("eval");
  auto result = run_command(mpirun(2) + eval_args(dir_->file("train_av/av"), dir_->file("train_ar/ar"), run));
  ASSERT_EQ(result.exit_status, 0) << result.err;
  auto means = summary_means(run + "/summary.csv");
  const double av = means.at("2/av/cosine"), random = means.at("2/random/cosine"),
               shuffled = means.at("2/shuffled/cosine");
  std::cout << "anchor layer 2, 200 held-out rows, mean cosine: av " << av << ", random " << random << ", shuffled "
            << shuffled << "\n";
  // An AV that ignores its vector lands within about 0.015 of the baselines (they differ
  // from each other by 0.003 here, and the 600-step AV was 0.015 below random); 0.02 asks
  // for more than that, below the 0.046 this fixture measures.
  EXPECT_GT(av, random + 0.02);
  EXPECT_GT(av, shuffled + 0.02);
}

}  // namespace
}  // namespace nla::test
