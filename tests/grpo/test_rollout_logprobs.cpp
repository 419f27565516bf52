// GRPO's trainer scores what its rollouts sampled: for AV rollouts drawn by the KV-cache
// generator (model::generate, the Verbalizer's engine) at temperature T, the log-probs the
// trainer recomputes (make_av_batch + ShardedVerbalizer::token_logprobs, T in the batch) equal
// log softmax(logits / T) of the generator's own steps at the sampled tokens.
// Tolerance 1e-4: fp32, the cached step-by-step forward against the full-sequence one.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "nla/dist/communicator.hpp"
#include "nla/model/generate.hpp"
#include "nla/model/qwen2.hpp"
#include "nla/autoencoder/prompts.hpp"
#include "nla/autoencoder/verbalizer.hpp"
#include "nla/tokenizer/tokenizer.hpp"
#include "nla/autoencoder/sharded.hpp"
#include "test_support.hpp"

namespace nla::test {
namespace {

TEST(RolloutLogprobs, TrainerRecomputesTheTemperedSamplingDistribution) {
  TempDir dir;
  auto init = run_nla("init-model --preset tiny --seed 4 --tokenizer " + repo_path("models/tokenizer.json") + " --out " +
                      dir.file("model") + " --log-level warn");
  ASSERT_EQ(init.exit_status, 0) << init.err;
  auto tokenizer = tokenizer::Tokenizer::from_file(dir.file("model"));
  auto prompt = autoencoder::av_prompt(tokenizer);
  auto av = model::Qwen2Model::load(dir.file("model"));
  const double injection_scale = 8.0, temperature = 0.7;
  const int64_t rows = 4;
  at::manual_seed(0);
  auto activations = at::randn({rows, av.config().hidden_size});
  auto vectors = autoencoder::injection_vectors(activations, injection_scale);

  std::vector<model::GenerationPrompt> prompts(static_cast<size_t>(rows));
  model::GenerationOptions generation;
  generation.max_new_tokens = 10;
  generation.temperature = temperature;
  generation.return_logits = true;
  generation.stop_token_ids = {autoencoder::kImEndTokenId, autoencoder::kEndOfTextTokenId};
  generation.pad_token_id = autoencoder::kImEndTokenId;
  for (int64_t i = 0; i < rows; ++i) {
    auto& p = prompts[static_cast<size_t>(i)];
    p.ids.assign(prompt.ids.begin(), prompt.ids.end());
    p.injections.emplace_back(prompt.marker_position, vectors[i]);
    generation.seeds.push_back(static_cast<uint64_t>(100 + i));
  }
  auto result = model::generate(av, prompts, generation);

  autoencoder::ShardedVerbalizer trainer(model::Qwen2Model::load(dir.file("model")), dist::Communicator::world());
  auto batch = autoencoder::make_av_batch(prompt, activations, result.tokens, injection_scale, at::kCPU, at::kFloat);
  batch.temperature = temperature;
  auto tempered = trainer.token_logprobs(batch);  // (B, A)
  batch.temperature = 1.0;
  auto plain = trainer.token_logprobs(batch);

  double worst = 0, temperature_effect = 0;
  for (int64_t i = 0; i < rows; ++i) {
    const auto& tokens = result.tokens[static_cast<size_t>(i)];
    ASSERT_FALSE(tokens.empty());
    for (size_t t = 0; t < tokens.size(); ++t) {
      auto step_logits = result.step_logits[t][i].to(at::kDouble);  // (V)
      const int64_t token = tokens[t], a = static_cast<int64_t>(t);
      const double sampled = at::log_softmax(step_logits / temperature, 0)[token].item<double>();
      worst = std::max(worst, std::abs(sampled - tempered[i][a].item<double>()));
      temperature_effect = std::max(temperature_effect, std::abs(sampled - plain[i][a].item<double>()));
    }
  }
  EXPECT_LT(worst, 1e-4);
  EXPECT_GT(temperature_effect, 1e-2);  // T = 1 is another distribution: the test can tell them apart
}

}  // namespace
}  // namespace nla::test
