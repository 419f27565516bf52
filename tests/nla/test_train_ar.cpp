// nla train-ar and nla reconstruct end to end on the tiny model and a small store of the
// bundled corpus: validation fve_nrm rises well above its start, the training loss falls,
// the run directory holds config.ini, provenance.json, metrics.jsonl and the AR checkpoint,
// and reconstruct turns descriptions into the same vectors as the trained AR. Bad input
// exits 2 with one line.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <iostream>
#include <numeric>
#include <sstream>

#include "test_support.hpp"

namespace nla::test {
namespace {

class TrainAr : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    auto init = run_nla("init-model --preset tiny --seed 3 --tokenizer " + repo_path("models/tokenizer.json") +
                        " --out " + dir_->file("model"));
    ASSERT_EQ(init.exit_status, 0) << init.err;
    auto extract = run_nla("extract --model " + dir_->file("model") + " --corpus " + repo_path("data/corpus") +
                           " --max-docs 400 --doc-stride 4 --layers 1,3 --positions-per-doc 4 --min-position 32"
                           " --max-tokens 160 --batch-docs 8 --seed 0 --threads 2 --out " + dir_->file("acts.h5"));
    ASSERT_EQ(extract.exit_status, 0) << extract.err;
    auto copy = run_command("cp " + dir_->file("acts.h5") + " " + dir_->file("unlabelled.h5"));
    ASSERT_EQ(copy.exit_status, 0);
    auto label = run_nla("label --store " + dir_->file("acts.h5"));
    ASSERT_EQ(label.exit_status, 0) << label.err;
  }
  static void TearDownTestSuite() { delete dir_; }
  static TempDir* dir_;
};
TempDir* TrainAr::dir_ = nullptr;

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::vector<nlohmann::json> records;
  std::istringstream in(read_text(path));
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) records.push_back(nlohmann::json::parse(line));
  return records;
}

TEST_F(TrainAr, ValidationFveNrmRisesAndLossFalls) {
  std::string run = dir_->file("run");
  auto result = run_nla("train-ar --store " + dir_->file("acts.h5") + " --layer 1 --model " + dir_->file("model") +
                        " --out " + run + " --steps 60 --batch 16 --grad-accum 1 --lr-max 5e-3 --lr-min 5e-4"
                        " --lr-warmup-steps 5 --eval-every 20 --seed 1 --threads 2");
  ASSERT_EQ(result.exit_status, 0) << result.err;
  for (const char* name : {"config.ini", "provenance.json", "metrics.jsonl", "ar/config.json", "ar/model.safetensors",
                           "ar/value_head.safetensors", "ar/nla_meta.yaml", "ar/tokenizer.json"})
    EXPECT_TRUE(std::filesystem::exists(run + "/" + name)) << name;

  std::vector<double> losses, fve;
  double baseline_fve = 0;
  for (const auto& record : read_jsonl(run + "/metrics.jsonl")) {
    if (record["split"] == "train") losses.push_back(record["loss"].get<double>());
    if (record["split"] == "validation") {
      fve.push_back(record["fve_nrm"].get<double>());
      baseline_fve = record["baseline_fve_nrm"].get<double>();
    }
  }
  ASSERT_EQ(losses.size(), 60u);
  ASSERT_EQ(fve.size(), 4u);  // steps 0, 20, 40, 60
  auto mean = [](auto begin, auto end) { return std::accumulate(begin, end, 0.0) / static_cast<double>(end - begin); };
  // The first step's loss is the identity-initialised AR's; the last 10 steps' mean smooths
  // the batch noise (batches of 16).
  double first_losses = losses.front(), last_losses = mean(losses.end() - 10, losses.end());
  std::cout << "fve_nrm " << fve.front() << " -> " << fve.back() << " (mean baseline " << baseline_fve << "); loss "
            << first_losses << " -> " << last_losses << " (first step / mean of the last 10)\n";
  EXPECT_GT(fve.back(), fve.front() + 0.2);
  EXPECT_LT(last_losses, 0.9 * first_losses);

  // reconstruct: descriptions -> vectors with the trained AR (.jsonl and .npy).
  write_text(dir_->file("descriptions.jsonl"), "{\"description\": \"a river\"}\n{\"description\": \"numbers\"}\n");
  auto jsonl = run_nla("reconstruct --ar " + run + "/ar --descriptions " + dir_->file("descriptions.jsonl") +
                       " --out " + dir_->file("vectors.jsonl"));
  ASSERT_EQ(jsonl.exit_status, 0) << jsonl.err;
  auto vectors = read_jsonl(dir_->file("vectors.jsonl"));
  ASSERT_EQ(vectors.size(), 2u);
  EXPECT_EQ(vectors[0]["vector"].size(), 64u);
  auto npy = run_nla("reconstruct --ar " + run + "/ar --descriptions " + dir_->file("descriptions.jsonl") + " --out " +
                     dir_->file("vectors.npy"));
  ASSERT_EQ(npy.exit_status, 0) << npy.err;
  EXPECT_EQ(std::filesystem::file_size(dir_->file("vectors.npy")), 128u + 2 * 64 * 4);
}

TEST_F(TrainAr, BadInputExitsTwoWithOneLine) {
  auto no_descriptions = run_nla("train-ar --store " + dir_->file("unlabelled.h5") + " --layer 1 --model " +
                                 dir_->file("model") + " --out " + dir_->file("bad1") + " --steps 2");
  EXPECT_EQ(no_descriptions.exit_status, 2);
  EXPECT_NE(no_descriptions.err.find("/descriptions/gold"), std::string::npos) << no_descriptions.err;
  auto no_layer = run_nla("train-ar --store " + dir_->file("acts.h5") + " --layer 2 --model " + dir_->file("model") +
                          " --out " + dir_->file("bad2") + " --steps 2");
  EXPECT_EQ(no_layer.exit_status, 2);
  EXPECT_NE(no_layer.err.find("layer 2"), std::string::npos) << no_layer.err;
  write_text(dir_->file("one.jsonl"), "{\"description\": \"a river\"}\n");
  auto not_ar = run_nla("reconstruct --ar " + dir_->file("model") + " --descriptions " + dir_->file("one.jsonl") +
                        " --out " + dir_->file("v.npy"));
  EXPECT_EQ(not_ar.exit_status, 2);
  EXPECT_NE(not_ar.err.find("nla_meta.yaml"), std::string::npos) << not_ar.err;
}

}  // namespace
}  // namespace nla::test
