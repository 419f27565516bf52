// The pipeline learns, on the tiny model: an AV trained by `nla train-av` reads its injected
// vector, so in `nla eval` at the anchor layer `av` beats `random`, `shuffled` and the layer
// mean on cosine; `nla grpo` from that AV and AR raises the reward above the SFT AV's; and
// steering toward a token raises the rate at which the AV names it.
//
// Fixture (about 5 minutes on 2 cores; the AV SFT is most of it): the demo's recipe
// (docs/demo.md: init-model --embedding-std 0.5, frozen AV embeddings, anchor layer 2, gold
// descriptions that name the current token, the AR trained on the SFT AV's own greedy
// descriptions) on the demo's training and held-out documents, with AV batches of 32 for 1000
// steps instead of the demo's 4000. Measured (one thread per rank, seeds fixed): at layer 2 on
// 200 held-out rows, mean cosine av 0.086, mean (leave-one-out) 0.047, random 0.037, shuffled
// 0.042. Whole file 406 s: fixture 292, GRPO 96, steering 11, eval 5. Batches of 16 were
// not enough (av 0.058, below the mean), nor were 600 steps of 32 with an AR on the gold
// descriptions (av 0.061, random 0.076).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>

#include "nla/io/safetensors.hpp"
#include "nla/model/qwen2.hpp"
#include "nla/tokenizer/tokenizer.hpp"
#include "test_support.hpp"
#include "token_descriptions.hpp"

namespace nla::test {
namespace {

std::string mpirun(int ranks) {
  return std::string(NLA_MPIEXEC) + " -n " + std::to_string(ranks) + " " + NLA_BINARY + " ";
}

// summary.csv -> mean of (layer, condition, metric); steer-audit's: of (direction, scale, metric).
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
    auto av = run_command(mpirun(2) + "train-av" + common + " --out " + dir_->file("train_av") +
                          " --steps 1000 --batch 32 --lr-max 3e-3 --lr-warmup-steps 20 --freeze-embeddings");
    ASSERT_EQ(av.exit_status, 0) << av.err;
    // The AR learns from the SFT AV's greedy descriptions of the training rows, as in the demo.
    auto described = run_command(mpirun(2) + "label --store " + dir_->file("acts.h5") + " --labeler av:" +
                                 dir_->file("train_av/av") + " --name av --max-new-tokens 16 --log-level warn");
    ASSERT_EQ(described.exit_status, 0) << described.err;
    auto ar = run_command(mpirun(2) + "train-ar" + common + " --descriptions av --out " + dir_->file("train_ar") +
                          " --steps 1000 --batch 16 --lr-max 5e-3 --lr-warmup-steps 10");
    ASSERT_EQ(ar.exit_status, 0) << ar.err;
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

TEST_F(Learning, TrainedAvBeatsRandomAndTheMeanAtTheAnchorLayer) {
  const std::string run = dir_->file("eval");
  auto result = run_command(mpirun(2) + eval_args(dir_->file("train_av/av"), dir_->file("train_ar/ar"), run));
  ASSERT_EQ(result.exit_status, 0) << result.err;
  auto means = summary_means(run + "/summary.csv");
  const double av = means.at("2/av/cosine"), random = means.at("2/random/cosine"),
               shuffled = means.at("2/shuffled/cosine"), mean = means.at("2/mean/cosine");
  std::cout << "anchor layer 2, 200 held-out rows, mean cosine: av " << av << ", random " << random << ", shuffled "
            << shuffled << ", mean " << mean << "\n";
  // An AV that ignores its vector lands within about 0.015 of the baselines (random and
  // shuffled differ by 0.005 here, and a 600-step AV was 0.015 below random); 0.02 asks for
  // more than that, below the 0.044-0.049 this fixture measures.
  EXPECT_GT(av, random + 0.02);
  EXPECT_GT(av, shuffled + 0.02);
  // The layer mean (leave-one-out): measured av 0.086 against 0.047; 0.02 is half that gap.
  EXPECT_GT(av, mean + 0.02);
}

// GRPO from the fixture's SFT AV and AR raises the mean reward above the SFT AV's, both
// sampled on the same activations with the same seeds and scored by the same (final) AR
// (nla grpo --eval-store: eval.jsonl). The evaluation uses 200 of the activations GRPO
// trains on: the reward it optimises.
//
// Where the gain comes from at this scale: the AR reads the SFT AV's sampled answers not much
// worse than the gold ones, so better content leaves little to gain in 40 steps. The answer
// budget does: a sample fails (reward -2) unless it closes its answer *and* stops (the
// end-of-turn token) within the budget, as the authors count it. A one-token answer needs
// 9 tokens + <|im_end|>; with at most 11 new tokens the SFT AV, sampling at temperature 1,
// fails 86% of the time, and GRPO learns to close and stop within the budget. (At 10 every
// sample failed: no signal at all; at 12 only 2% did, and GRPO gained nothing.) Measured with
// this fixture under the authors' defaults (sequence-mean loss, the AR on every successful
// sample, AdamW 0.9/0.95; 40 steps of 16 x 4 samples, 2 PPO epochs, lr 1e-3): failure rate
// 86% -> 18% (step 40); reward gain over the SFT AV -0.040 (step 20), 0.031 +- 0.019
// (step 40). The AR, trained on the policy's answers every step, still reads the SFT AV's
// (fve_nrm -0.30 at the start, -0.31 at the end).
TEST_F(Learning, GrpoRaisesTheRewardAboveTheSftAv) {
  const std::string run = dir_->file("grpo");
  auto result = run_command(
      mpirun(2) + "grpo --store " + dir_->file("acts.h5") + " --av " + dir_->file("train_av/av") + " --ar " +
      dir_->file("train_ar/ar") + " --out " + run + " --steps 40 --activations-per-step 16 --samples-per-activation 4"
      " --max-new-tokens 11 --lr 1e-3 --ppo-epochs 2 --ar-lr 1e-3 --ar-refresh-every 1 --freeze-embeddings"
      " --eval-store " + dir_->file("acts.h5") + " --eval-rows 200 --eval-every 20 --checkpoint-every 0"
      " --seed 0 --log-level warn");
  ASSERT_EQ(result.exit_status, 0) << result.err;
  auto evals = read_jsonl(run + "/eval.jsonl");
  ASSERT_EQ(evals.size(), 3u);  // steps 0, 20, 40
  const auto& start = evals.front();
  const auto& end = evals.back();
  ASSERT_EQ(end["step"].get<int>(), 40);
  for (const auto& e : evals)
    std::cout << "step " << e["step"] << ": reward " << e["policy"]["reward_mean"] << " (SFT AV "
              << e["sft"]["reward_mean"] << ", gain " << e["reward_gain"] << " +- " << e["reward_gain_se"]
              << "), failed " << e["policy"]["failure_rate"] << " (SFT AV " << e["sft"]["failure_rate"]
              << "), fve_nrm " << e["policy"]["fve_nrm"] << " (SFT AV " << e["sft"]["fve_nrm"] << ")\n";
  // 0.015: below the measured 0.031, above what the step-20 policy reaches (-0.040). The run
  // is seeded, so the same build gives the same figures.
  const double gain = end["reward_gain"].get<double>(), se = end["reward_gain_se"].get<double>();
  EXPECT_GT(gain, 0.015) << "+- " << se;
  EXPECT_LT(end["policy"]["failure_rate"].get<double>(), end["sft"]["failure_rate"].get<double>() - 0.3);
  // The AR keeps reading the SFT AV's descriptions while it learns the policy's.
  ASSERT_FALSE(end["sft"]["fve_nrm"].is_null());
  EXPECT_GT(end["sft"]["fve_nrm"].get<double>(), start["sft"]["fve_nrm"].get<double>() - 0.1);
}


// Steering audited by the fixture's AV (issue 22's learning check): steering layer 2 toward the
// token embedding of "." raises the rate at which the AV names '.' with the scale, while a
// random direction of the same norm never makes it. The AV reads the current token, and the
// tokens it names right when they are there are mostly punctuation; steering toward " is",
// " of", " and" or " was" (an earlier fixture) left their rate at 0 at every scale, so the
// test uses the AV's own vocabulary: ".".
// Measured with this fixture (16 prompts x 4 positions, greedy): mention rate 0 unsteered,
// 0.19, 0.81, 1 at scales 0.75, 1, 1.5; random 0 at every scale; the AR's reconstruction's
// cosine with v at 1.5: 0.9995.
TEST_F(Learning, SteeringTowardATokenRaisesItsMentions) {
  {
    auto model = model::Qwen2Model::load(dir_->file("model"));
    auto tok = tokenizer::Tokenizer::from_file(dir_->file("model"));
    const auto ids = tok.encode(".");
    ASSERT_EQ(ids.size(), 1u);
    at::Tensor row = model.weights().embed_tokens[ids[0]].to(at::kFloat).contiguous();  // (C)
    io::write_safetensors(dir_->file("period.safetensors"),
                          {io::TensorBytes{"vector", io::DType::F32, {row.size(0)}, row.data_ptr(),
                                           static_cast<size_t>(row.numel()) * sizeof(float)}});
  }
  std::ofstream prompts(dir_->file("prompts.jsonl"));
  for (const char* text : {"Once upon a time there was", "The weather today is", "In the kitchen we found",
                           "Scientists have discovered that", "My favourite animal is", "The city council voted to",
                           "After the game, the players", "She opened the letter and", "According to the report,",
                           "The recipe calls for", "During the winter months,", "He walked into the room and",
                           "The history of the region", "Students who study", "The new software update",
                           "On the other side of the river"})
    prompts << nlohmann::json{{"text", text}}.dump() << "\n";
  prompts.close();
  const std::string run = dir_->file("steer");
  auto result = run_command(mpirun(2) + "steer-audit --model " + dir_->file("model") + " --av " +
                            dir_->file("train_av/av") + " --ar " + dir_->file("train_ar/ar") + " --vector " +
                            dir_->file("period.safetensors") + " --layer 2 --prompts " + dir_->file("prompts.jsonl") +
                            " --scales 0.75,1,1.5 --concept-words . --positions-per-prompt 4 --max-new-tokens 12"
                            " --av-max-new-tokens 16 --seed 0 --log-level warn --out " + run);
  ASSERT_EQ(result.exit_status, 0) << result.err;
  // summary.csv: direction,scale,metric,mean,... (the same first columns as eval's).
  const auto means = summary_means(run + "/summary.csv");
  std::map<std::string, double> rate, cosine;  // "vector/1.5" -> mention rate, mean cos_v
  for (const auto& [key, mean] : means) {
    const auto cut = key.rfind('/');
    if (key.substr(cut + 1) == "mention_rate") rate[key.substr(0, cut)] = mean;
    if (key.substr(cut + 1) == "cos_v") cosine[key.substr(0, cut)] = mean;
  }
  for (const char* direction : {"vector", "random"}) {
    std::cout << direction << " mention rate by scale:";
    for (const char* scale : {"0", "0.75", "1", "1.5"})
      std::cout << " " << scale << ": " << rate.at(std::string(direction) + "/" + scale) << " (cos_v "
                << cosine.at(std::string(direction) + "/" + scale) << ")";
    std::cout << "\n";
  }
  // Monotonic over four scales, each step by more than 3 of the 64 samples (measured steps:
  // 12, 40 and 12 samples); beyond the random direction at the same scales.
  EXPECT_GT(rate.at("vector/0.75"), rate.at("vector/0") + 0.05);
  EXPECT_GT(rate.at("vector/1"), rate.at("vector/0.75") + 0.05);
  EXPECT_GT(rate.at("vector/1.5"), rate.at("vector/1") + 0.05);
  for (const char* scale : {"0.75", "1", "1.5"})
    EXPECT_GT(rate.at(std::string("vector/") + scale), rate.at(std::string("random/") + scale)) << scale;
  EXPECT_GT(rate.at("vector/1.5"), rate.at("random/1.5") + 0.5);
  // The AR reads the steered descriptions as the steering direction (measured 0.9995 at 1.5).
  EXPECT_GT(cosine.at("vector/1.5"), cosine.at("vector/0") + 0.3);
}

}  // namespace
}  // namespace nla::test
