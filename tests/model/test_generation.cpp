// KV-cache generation and the NLA hooks: cache = recomputation, batch = one by one (left
// and right padding), seeds, stop tokens, injection, truncation, capture, autograd.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/version.h>

#include "model_test_util.hpp"
#include "nla/core/error.hpp"
#include "nla/model/generate.hpp"
#include "nla/model/qwen2.hpp"
#include "test_support.hpp"

namespace {

using nla::model::ForwardInput;
using nla::model::ForwardOptions;
using nla::model::GenerationOptions;
using nla::model::GenerationPrompt;
using nla::model::Qwen2Model;

// fp32 recomputation vs cached: same math, different shapes of the matmuls.
constexpr double kCacheTolerance = 1e-4;

class Generation : public ::testing::Test {
 protected:
  void SetUp() override { at::set_num_threads(1); }
  Qwen2Model model_ = nla::test::spread_random_model(nla::test::small_config(3, 6, 2, 8, 72, 97, false), 77);
  std::vector<std::vector<int64_t>> prompts_ = {{5, 17, 3, 96, 8}, {1, 2, 3, 4, 5, 6, 7, 8, 9}, {42, 11}};
};

at::Tensor ids_tensor(const std::vector<int64_t>& ids) { return at::tensor(ids, at::kLong).unsqueeze(0); }

TEST_F(Generation, KvCacheEqualsFullRecomputation) {
  GenerationOptions options;
  options.max_new_tokens = 10;
  options.return_logits = true;
  for (const auto& prompt : prompts_) {
    auto result = nla::model::generate(model_, {GenerationPrompt{prompt, {}, {}}}, options);
    const auto& tokens = result.tokens[0];
    ASSERT_EQ(tokens.size(), 10u);
    std::vector<int64_t> all = prompt;
    all.insert(all.end(), tokens.begin(), tokens.end() - 1);
    ForwardInput input;
    input.input_ids = ids_tensor(all);
    auto full = model_.forward(input).logits[0];  // (T, V)
    for (size_t step = 0; step < tokens.size(); ++step) {
      at::Tensor expected = full[static_cast<int64_t>(prompt.size() + step - 1)];
      auto stats = nla::test::compare(result.step_logits[step][0], expected);
      EXPECT_LE(stats.max_rel, kCacheTolerance) << "step " << step << " at " << stats.where;
      EXPECT_EQ(tokens[step], expected.argmax().item<int64_t>()) << "step " << step;
    }
  }
}

TEST_F(Generation, BatchEqualsOneByOneWithLeftAndRightPadding) {
  for (bool left : {true, false}) {
    SCOPED_TRACE(left ? "left padding" : "right padding");
    GenerationOptions options;
    options.max_new_tokens = 8;
    options.left_padding = left;
    options.return_logits = true;
    std::vector<GenerationPrompt> batch;
    for (const auto& prompt : prompts_) batch.push_back({prompt, {}, {}});
    auto batched = nla::model::generate(model_, batch, options);
    for (size_t i = 0; i < prompts_.size(); ++i) {
      auto single = nla::model::generate(model_, {batch[i]}, options);
      EXPECT_EQ(batched.tokens[i], single.tokens[0]) << "sequence " << i;
      for (size_t step = 0; step < single.step_logits.size(); ++step) {
        auto stats = nla::test::compare(batched.step_logits[step][static_cast<int64_t>(i)], single.step_logits[step][0]);
        EXPECT_LE(stats.max_rel, kCacheTolerance) << "sequence " << i << " step " << step << " at " << stats.where;
      }
    }
  }
}

TEST_F(Generation, SeedsDecideSamplesIndependentlyOfTheBatch) {
  GenerationOptions options;
  options.max_new_tokens = 12;
  options.temperature = 1.3;
  options.top_p = 0.95;
  options.seeds = {11, 22, 33};
  std::vector<GenerationPrompt> batch;
  for (const auto& prompt : prompts_) batch.push_back({prompt, {}, {}});
  auto first = nla::model::generate(model_, batch, options);
  auto second = nla::model::generate(model_, batch, options);
  EXPECT_EQ(first.tokens, second.tokens);
  GenerationOptions single_options = options;
  single_options.seeds = {22};
  EXPECT_EQ(nla::model::generate(model_, {batch[1]}, single_options).tokens[0], first.tokens[1]);
  single_options.seeds = {23};
  EXPECT_NE(nla::model::generate(model_, {batch[1]}, single_options).tokens[0], first.tokens[1]);
  // Sampling really samples: not the greedy continuation.
  GenerationOptions greedy;
  greedy.max_new_tokens = 12;
  EXPECT_NE(nla::model::generate(model_, {batch[1]}, greedy).tokens[0], first.tokens[1]);
  // A vanishing top-p keeps only the most likely token: greedy again.
  options.top_p = 1e-9;
  auto narrow = nla::model::generate(model_, batch, options);
  EXPECT_EQ(narrow.tokens, nla::model::generate(model_, batch, greedy).tokens);
}

// The reference sampler: the inverse CDF through a float64 cumsum over the vocabulary and a
// batched binary search, as nla sampled before the CPU path stopped writing the cumsum.
// The CPU sampler must pick exactly the same tokens (same sums in the same order).
std::vector<int64_t> reference_samples(const at::Tensor& logits, double temperature, double top_p,
                                       std::vector<at::Generator>& generators) {
  const int64_t b = logits.size(0), v = logits.size(1);
  at::Tensor probs = at::softmax(logits.to(at::kFloat) / temperature, -1);
  at::Tensor order;
  if (top_p < 1.0) {
    auto [sorted, sorted_order] = probs.sort(-1, true);
    probs = sorted * ((sorted.cumsum(-1) - sorted) < top_p);
    order = sorted_order;
  }
  at::Tensor cdf = probs.to(at::kDouble).cumsum(-1);
  at::Tensor draws = at::empty({b, 1}, at::kDouble);
  for (int64_t i = 0; i < b; ++i)
    draws[i][0] = at::rand({1}, generators[static_cast<size_t>(i)], at::TensorOptions().dtype(at::kDouble))
                      .item<double>() * cdf[i][v - 1].item<double>();
  at::Tensor index = at::searchsorted(cdf, draws, false, true).clamp_max(v - 1);
  if (order.defined()) index = order.gather(1, index);
  std::vector<int64_t> out;
  for (int64_t i = 0; i < b; ++i) out.push_back(index[i][0].item<int64_t>());
  return out;
}

TEST(Sampling, CpuInverseCdfPicksTheReferenceTokens) {
  at::manual_seed(11);
  const int64_t v = 151936;
  for (double temperature : {0.7, 1.0, 2.0})
    for (double top_p : {1.0, 0.9}) {
      // Peaked rows (a few large logits) and flat ones: the draws land all over the CDF.
      // 11 rows: one whole group of the sampler's 8 rows at once, and a group of 3.
      at::Tensor logits = at::randn({11, v}) * 3.0;
      logits.narrow(0, 0, 2).narrow(1, 100, 5).add_(12.0);
      logits.narrow(0, 9, 1).narrow(1, 7, 3).add_(12.0);
      std::vector<at::Generator> ours, theirs;
      std::vector<at::Generator*> pointers;
      for (uint64_t seed = 0; seed < 11; ++seed) {
        ours.push_back(at::make_generator<at::CPUGeneratorImpl>(seed * 7 + 1));
        theirs.push_back(at::make_generator<at::CPUGeneratorImpl>(seed * 7 + 1));
      }
      for (auto& generator : ours) pointers.push_back(&generator);
      for (int round = 0; round < 4; ++round)  // generators advance: several draws per row
        EXPECT_EQ(nla::model::sample_tokens(logits, temperature, top_p, pointers),
                  reference_samples(logits, temperature, top_p, theirs))
            << "temperature " << temperature << " top_p " << top_p << " round " << round;
    }
  // Non-finite probabilities are an error naming the row (the sum prints as nan or -nan).
  at::Tensor bad = at::zeros({2, 8});
  bad[1][3] = std::nan("");
  std::vector<at::Generator> generators = {at::make_generator<at::CPUGeneratorImpl>(1),
                                           at::make_generator<at::CPUGeneratorImpl>(2)};
  std::vector<at::Generator*> pointers = {&generators[0], &generators[1]};
  try {
    nla::model::sample_tokens(bad, 1.0, 1.0, pointers);
    FAIL() << "expected an error";
  } catch (const nla::Error& error) {
    EXPECT_NE(std::string(error.what()).find("probabilities of row 1 sum to "), std::string::npos) << error.what();
  }
}

TEST_F(Generation, StopTokensEndSequencesSeparately) {
  GenerationOptions options;
  options.max_new_tokens = 8;
  std::vector<GenerationPrompt> batch;
  for (const auto& prompt : prompts_) batch.push_back({prompt, {}, {}});
  auto free_run = nla::model::generate(model_, batch, options);
  options.stop_token_ids = {free_run.tokens[0][2]};  // sequence 0 stops at its 3rd token
  auto stopped = nla::model::generate(model_, batch, options);
  ASSERT_EQ(stopped.tokens[0].size(), 3u);
  EXPECT_EQ(stopped.finish_reasons[0], "stop");
  for (size_t i = 1; i < batch.size(); ++i) {
    // The others continue unchanged up to their own first stop token (or the cap).
    auto it = std::find(free_run.tokens[i].begin(), free_run.tokens[i].end(), options.stop_token_ids[0]);
    std::vector<int64_t> expected(free_run.tokens[i].begin(),
                                  it == free_run.tokens[i].end() ? it : it + 1);
    EXPECT_EQ(stopped.tokens[i], expected) << "sequence " << i;
  }
}

// Continuous batching: 9 prompts of different lengths through 2, 3 or 5 rows, sequences ending
// at stop tokens at different steps, so rows are refilled mid-run and the cache's columns are
// compacted (9 prompts x up to 10 tokens through 2 rows outrun 2 x 10 spare columns). Every
// sequence's tokens (greedy and sampled) and logits equal those of one batch of all prompts,
// also with the static-shape decode step.
TEST_F(Generation, ContinuousBatchingEqualsOneBatch) {
  std::vector<GenerationPrompt> batch;
  for (int i = 0; i < 9; ++i) {
    std::vector<int64_t> ids;
    for (int j = 0; j < 2 + (i * 5) % 7; ++j) ids.push_back((i * 31 + j * 7) % 97);
    batch.push_back({ids, {}, {}});
  }
  // An injected prompt among them: the injection follows the prompt into its row.
  batch[4].injections.emplace_back(1, at::randn({model_.config().hidden_size}, at::kFloat));
  for (double temperature : {0.0, 1.2}) {
    SCOPED_TRACE(temperature > 0 ? "sampled" : "greedy");
    GenerationOptions options;
    options.max_new_tokens = 10;
    options.temperature = temperature;
    options.return_logits = true;
    auto free_run = nla::model::generate(model_, batch, options);
    // Stop tokens that end some sequences early, at different steps.
    options.stop_token_ids = {free_run.tokens[0][3], free_run.tokens[5][1]};
    auto all_at_once = nla::model::generate(model_, batch, options);
    int64_t stopped = 0;
    for (const auto& reason : all_at_once.finish_reasons) stopped += reason == "stop" ? 1 : 0;
    ASSERT_GE(stopped, 2);
    ASSERT_LT(stopped, 9);  // some run to the cap
    for (int64_t max_batch : {2, 3, 5}) {  // 5: two rows must be free before a refill
      options.max_batch = max_batch;
      auto refilled = nla::model::generate(model_, batch, options);
      EXPECT_EQ(refilled.tokens, all_at_once.tokens) << "max_batch " << max_batch;
      EXPECT_EQ(refilled.finish_reasons, all_at_once.finish_reasons) << "max_batch " << max_batch;
      ASSERT_EQ(refilled.step_logits.size(), all_at_once.step_logits.size());
      for (size_t step = 0; step < refilled.step_logits.size(); ++step) {
        auto stats = nla::test::compare(refilled.step_logits[step], all_at_once.step_logits[step]);
        EXPECT_LE(stats.max_abs, kCacheTolerance) << "max_batch " << max_batch << " step " << step;
      }
      options.return_logits = false;  // without logits: greedy ids straight from the forward
      EXPECT_EQ(nla::model::generate(model_, batch, options).tokens, all_at_once.tokens) << "max_batch " << max_batch;
      options.check_every = 3;  // ids read back every 3 steps (a GPU's default is 8): stops found late
      auto deferred = nla::model::generate(model_, batch, options);
      EXPECT_EQ(deferred.tokens, all_at_once.tokens) << "check_every 3, max_batch " << max_batch;
      EXPECT_EQ(deferred.finish_reasons, all_at_once.finish_reasons) << "check_every 3, max_batch " << max_batch;
      options.check_every = 0;
      options.return_logits = true;
    }
    // The static-shape step a CUDA graph replays (attention over the whole cache, keys written
    // at a device-side column, no rows dropped), run eagerly here: the same tokens and logits.
    options.static_decode_step = true;
    for (int64_t max_batch : {0, 3}) {
      options.max_batch = max_batch;
      auto static_run = nla::model::generate(model_, batch, options);
      EXPECT_EQ(static_run.tokens, all_at_once.tokens) << "static, max_batch " << max_batch;
      GenerationOptions deferred = options;  // as a GPU runs it: static step, ids read back every 8 steps
      deferred.return_logits = false;
      deferred.check_every = 8;
      EXPECT_EQ(nla::model::generate(model_, batch, deferred).tokens, all_at_once.tokens)
          << "static, check_every 8, max_batch " << max_batch;
      for (size_t step = 0; step < static_run.step_logits.size(); ++step)
        EXPECT_LE(nla::test::compare(static_run.step_logits[step], all_at_once.step_logits[step]).max_abs,
                  kCacheTolerance) << "static, max_batch " << max_batch << " step " << step;
    }
  }
}

// greedy_tokens (the ids generate takes when greedy, without logits): at::argmax of the
// logits, the first index on a tie, and a NaN hidden state refused.
TEST_F(Generation, GreedyTokensAreTheFirstArgmaxOfTheLogits) {
  const int64_t vocab = model_.config().vocab_size;
  at::manual_seed(3);
  ForwardInput input;
  input.input_ids = at::randint(vocab - 1, {4, 6}, at::kLong);  // never the last token, whose row changes below
  ForwardOptions options;
  options.logits_index = at::full({4}, 5, at::kLong);
  at::Tensor logits = model_.forward(input, options).logits;  // (4, V)
  options.greedy_tokens = true;
  EXPECT_TRUE(at::equal(model_.forward(input, options).next_tokens, logits.argmax(-1)));
  auto& weights = model_.weights();
  at::Tensor& head = weights.lm_head.defined() ? weights.lm_head : weights.embed_tokens;
  const int64_t best = logits[0].argmax().item<int64_t>();
  ASSERT_LT(best, vocab - 1);
  head[vocab - 1].copy_(head[best]);  // the last token ties row 0's best: the earlier index wins
  EXPECT_EQ(model_.forward(input, options).next_tokens[0].item<int64_t>(), best);
  ForwardInput broken;
  broken.inputs_embeds = at::full({1, 2, model_.config().hidden_size}, std::numeric_limits<float>::quiet_NaN());
  options.logits_index = at::full({1}, 1, at::kLong);
  EXPECT_THROW(model_.forward(broken, options), nla::Error);
}

TEST_F(Generation, EmbeddingPromptsEqualIdPrompts) {
  GenerationOptions options;
  options.max_new_tokens = 6;
  const auto& prompt = prompts_[1];
  GenerationPrompt from_embeds;
  from_embeds.embeds = model_.embed(ids_tensor(prompt))[0];  // (T, C)
  EXPECT_EQ(nla::model::generate(model_, {from_embeds}, options).tokens,
            nla::model::generate(model_, {GenerationPrompt{prompt, {}, {}}}, options).tokens);
}

TEST_F(Generation, InjectionChangesExactlyThePositionsAfterIt) {
  const auto& prompt = prompts_[1];  // 9 tokens
  const int64_t position = 4;
  ForwardInput plain;
  plain.input_ids = ids_tensor(prompt);
  ForwardOptions options;
  options.capture_layers = {0, 2};
  auto base = model_.forward(plain, options);

  ForwardInput injected = plain;
  injected.injection.batch_index = at::tensor(std::vector<int64_t>{0}, at::kLong);
  injected.injection.position = at::tensor(std::vector<int64_t>{position}, at::kLong);
  injected.injection.vectors = at::randn({1, model_.config().hidden_size}) * 3;
  auto changed = model_.forward(injected, options);
  for (auto [name, a, b] : {std::tuple{"logits", base.logits, changed.logits},
                            std::tuple{"layer 0", base.captured.at(0), changed.captured.at(0)},
                            std::tuple{"layer 2", base.captured.at(2), changed.captured.at(2)}}) {
    // Causal: positions before the injection are bit-identical, every later one differs.
    EXPECT_TRUE(at::equal(a[0].narrow(0, 0, position), b[0].narrow(0, 0, position))) << name;
    for (int64_t t = position; t < static_cast<int64_t>(prompt.size()); ++t)
      EXPECT_GT((a[0][t] - b[0][t]).abs().max().item<double>(), 1e-3) << name << " position " << t;
  }
  // Injecting the token's own embedding changes nothing.
  injected.injection.vectors = model_.embed(ids_tensor({prompt[position]}))[0];
  auto same = model_.forward(injected, options);
  EXPECT_TRUE(at::equal(same.logits, base.logits));

  // Through generate: own embedding -> same tokens; a foreign vector -> different logits.
  GenerationOptions generation;
  generation.max_new_tokens = 6;
  generation.return_logits = true;
  GenerationPrompt with_own{prompt, {}, {{position, model_.embed(ids_tensor({prompt[position]}))[0][0]}}};
  auto reference = nla::model::generate(model_, {GenerationPrompt{prompt, {}, {}}}, generation);
  EXPECT_EQ(nla::model::generate(model_, {with_own}, generation).tokens, reference.tokens);
  GenerationPrompt with_foreign{prompt, {}, {{position, at::randn({model_.config().hidden_size}) * 3}}};
  // In a left-padded batch the injection lands at the right place of each sequence.
  std::vector<GenerationPrompt> batch = {GenerationPrompt{prompts_[2], {}, {}}, with_foreign};
  auto batched = nla::model::generate(model_, batch, generation);
  auto alone = nla::model::generate(model_, {with_foreign}, generation);
  EXPECT_EQ(batched.tokens[1], alone.tokens[0]);
  EXPECT_GT((alone.step_logits[0][0] - reference.step_logits[0][0]).abs().max().item<double>(), 1e-3);
}

// Steering (nla steer-audit's hook): scale 0 is the unsteered model bit for bit, in a
// forward and in generation.
TEST_F(Generation, SteeringAtScaleZeroIsTheUnsteeredModel) {
  ForwardInput input;
  input.input_ids = ids_tensor(prompts_[1]);
  ForwardOptions plain;
  plain.capture_layers = {0, 1, 2};
  ForwardOptions zero = plain;
  zero.steering = {{1, at::randn({model_.config().hidden_size}), 0.0, {}}};
  auto a = model_.forward(input, plain), b = model_.forward(input, zero);
  EXPECT_TRUE(at::equal(a.logits, b.logits));
  for (int64_t l : plain.capture_layers) EXPECT_TRUE(at::equal(a.captured.at(l), b.captured.at(l))) << l;

  GenerationOptions generation;
  generation.max_new_tokens = 6;
  generation.temperature = 1.0;
  generation.return_logits = true;
  std::vector<GenerationPrompt> batch;
  for (const auto& prompt : prompts_) batch.push_back(GenerationPrompt{prompt, {}, {}});
  auto reference = nla::model::generate(model_, batch, generation);
  generation.steering = zero.steering;
  auto steered = nla::model::generate(model_, batch, generation);
  EXPECT_EQ(steered.tokens, reference.tokens);
  for (size_t step = 0; step < reference.step_logits.size(); ++step)
    EXPECT_TRUE(at::equal(steered.step_logits[step], reference.step_logits[step])) << "step " << step;
}

// Adding scale * v after block l equals capturing the residual there, adding it by hand and
// running the remaining blocks and the head (a model made of those blocks).
TEST_F(Generation, SteeringEqualsAddingToTheResidualByHand) {
  const int64_t layer = 0, c = model_.config().hidden_size;
  const double scale = 3.0;
  at::Tensor vector = at::randn({c});
  ForwardInput input;
  input.input_ids = ids_tensor(prompts_[1]);
  ForwardOptions capture;
  capture.capture_layers = {layer};
  at::Tensor residual = model_.forward(input, capture).captured.at(layer);  // (1, T, C)

  nla::model::Qwen2Config rest_config = model_.config();
  rest_config.num_hidden_layers -= layer + 1;
  nla::model::Qwen2Weights rest;
  rest.embed_tokens = model_.weights().embed_tokens;
  rest.layers.assign(model_.weights().layers.begin() + layer + 1, model_.weights().layers.end());
  rest.norm = model_.weights().norm;
  rest.lm_head = model_.weights().lm_head;
  ForwardInput by_hand;
  by_hand.inputs_embeds = residual + scale * vector;
  at::Tensor expected = Qwen2Model::from_weights(rest_config, rest).forward(by_hand).logits;

  ForwardOptions steer;
  steer.steering = {{layer, vector, scale, {}}};
  auto stats = nla::test::compare(model_.forward(input, steer).logits, expected);
  EXPECT_LE(stats.max_rel, 1e-5) << stats.where;  // the same ops: rounding of the addition only
  EXPECT_GT((model_.forward(input).logits - expected).abs().max().item<double>(), 1e-2);  // it does steer
}

// In KV-cache generation the steering reaches the prompt and every generated token (or only
// the listed position ids, counted without padding), as a full steered forward over the
// final sequence says; a left-padded batch gives each sequence its own result.
TEST_F(Generation, SteeredKvCacheEqualsSteeredRecomputation) {
  const int64_t c = model_.config().hidden_size;
  for (std::vector<int64_t> positions : {std::vector<int64_t>{}, std::vector<int64_t>{1, 6, 10}}) {
    SCOPED_TRACE(positions.empty() ? "every position" : "positions 1, 6, 10");
    GenerationOptions options;
    options.max_new_tokens = 8;
    options.return_logits = true;
    options.steering = {{1, at::randn({c}), 2.0, positions}};
    std::vector<GenerationPrompt> batch;
    for (const auto& prompt : prompts_) batch.push_back(GenerationPrompt{prompt, {}, {}});
    auto result = nla::model::generate(model_, batch, options);
    auto unsteered_options = options;
    unsteered_options.steering.clear();
    auto unsteered = nla::model::generate(model_, batch, unsteered_options);
    double moved = 0;
    for (size_t i = 0; i < prompts_.size(); ++i) {
      const auto& prompt = prompts_[i];
      const auto& tokens = result.tokens[i];
      std::vector<int64_t> all = prompt;
      all.insert(all.end(), tokens.begin(), tokens.end() - 1);
      ForwardInput input;
      input.input_ids = ids_tensor(all);
      ForwardOptions steer;
      steer.steering = options.steering;
      auto full = model_.forward(input, steer).logits[0];  // (T, V)
      for (size_t step = 0; step < tokens.size(); ++step) {
        at::Tensor expected = full[static_cast<int64_t>(prompt.size() + step - 1)];
        auto stats = nla::test::compare(result.step_logits[step][static_cast<int64_t>(i)], expected);
        EXPECT_LE(stats.max_rel, kCacheTolerance) << "sequence " << i << " step " << step << " at " << stats.where;
        moved = std::max(moved, (result.step_logits[step][static_cast<int64_t>(i)] -
                                 unsteered.step_logits[step][static_cast<int64_t>(i)]).abs().max().item<double>());
      }
    }
    EXPECT_GT(moved, 1e-2);
  }
}

TEST_F(Generation, TruncatedLoadAndStopAfterLayerGiveTheCapturedResidual) {
  nla::test::TempDir dir;
  nla::test::write_test_checkpoint(model_, dir.path());
  ForwardInput input;
  input.input_ids = ids_tensor(prompts_[1]);
  ForwardOptions capture;
  capture.capture_layers = {0, 1, 2};
  auto full = model_.forward(input, capture);
  ASSERT_TRUE(full.logits.defined());

  ForwardOptions stop;
  stop.stop_after_layer = 1;
  auto stopped = model_.forward(input, stop);
  EXPECT_FALSE(stopped.logits.defined());
  EXPECT_TRUE(at::equal(stopped.hidden, full.captured.at(1)));

  // The AR trunk: blocks 0..1 only, no final norm or head, later blocks never read.
  nla::model::LoadOptions load;
  load.num_layers = 2;
  load.with_head = false;
  Qwen2Model trunk = Qwen2Model::load(dir.path(), load);
  EXPECT_EQ(trunk.num_loaded_layers(), 2);
  EXPECT_FALSE(trunk.has_head());
  auto names = trunk.named_parameters();
  for (const auto& [name, tensor] : names) {
    EXPECT_EQ(name.find("layers.2."), std::string::npos) << name;
    EXPECT_NE(name, "model.norm.weight");
  }
  auto trunk_out = trunk.forward(input);
  EXPECT_FALSE(trunk_out.logits.defined());
  EXPECT_TRUE(at::equal(trunk_out.hidden, full.captured.at(1)));
  // Full load from the checkpoint reproduces the in-memory model exactly (fp32 round trip).
  EXPECT_TRUE(at::equal(Qwen2Model::load(dir.path()).forward(input).logits, full.logits));
}

// LibTorch 2.x runs attention through scaled_dot_product_attention; it must agree with
// the hand-written path (the one the numpy reference checks on 1.13), causal and padded.
TEST_F(Generation, FusedAttentionMatchesHandWritten) {
#if TORCH_VERSION_MAJOR >= 2
  ForwardInput input;
  input.input_ids = at::tensor(std::vector<int64_t>{0, 0, 5, 17, 3, 96, 1, 2, 3, 4, 5, 6}, at::kLong).view({2, 6});
  for (bool padded : {false, true}) {
    input.attention_mask = padded ? at::tensor(std::vector<int64_t>{0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, at::kLong)
                                        .view({2, 6})
                                  : at::Tensor();
    ForwardOptions fused, reference;
    reference.fused_attention = false;
    auto stats = nla::test::compare(model_.forward(input, fused).logits.narrow(1, 2, 4),
                                    model_.forward(input, reference).logits.narrow(1, 2, 4));
    EXPECT_LE(stats.max_rel, kCacheTolerance) << (padded ? "padded" : "causal") << " at " << stats.where;
  }
#else
  GTEST_SKIP() << "LibTorch " << TORCH_VERSION_MAJOR << "." << TORCH_VERSION_MINOR << ": no scaled_dot_product_attention, the hand-written path is the only one";
#endif
}

// The fused kernel gets the padding bias in the model's dtype: float's lowest would round
// to -inf in bf16/fp16 and turn a fully masked (padding) query row into NaN there.
TEST(AttentionBias, StaysFiniteAndMaskingInHalfPrecisionTypes) {
  at::Tensor bias = at::zeros({1, 1, 2, 3}, at::kFloat);
  bias.index_put_({0, 0, 0}, std::numeric_limits<float>::lowest());  // a query that sees nothing
  bias.index_put_({0, 0, 1, 2}, std::numeric_limits<float>::lowest());
  for (auto dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    at::Tensor mask = nla::model::attention_bias_as(bias, dtype);
    EXPECT_EQ(mask.scalar_type(), dtype);
    EXPECT_TRUE(at::isfinite(mask).all().item<bool>()) << dtype;
    EXPECT_EQ(mask.to(at::kFloat).index({0, 0, 1, 0}).item<float>(), 0.0f) << dtype;
    // Scores of +-1000 added in that dtype stay finite; their softmax (in fp32: 1.13 has no
    // CPU half softmax) is finite everywhere and ~0 on masked keys.
    at::Tensor scores = at::full({1, 1, 2, 3}, -1000.0, at::kFloat).to(dtype) + mask;
    EXPECT_TRUE(at::isfinite(scores).all().item<bool>()) << dtype;
    at::Tensor probs = at::softmax(scores.to(at::kFloat), -1);
    EXPECT_TRUE(at::isfinite(probs).all().item<bool>()) << dtype;
    EXPECT_LT(probs.index({0, 0, 1, 2}).item<float>(), 1e-6f) << dtype;
  }
}

TEST_F(Generation, AutogradReachesParametersAndInjectedVectors) {
  auto model = nla::test::spread_random_model(nla::test::small_config(2, 4, 2, 8, 40, 53, true), 5);
  for (auto& parameter : model.parameters()) parameter.set_requires_grad(true);
  ForwardInput input;
  input.input_ids = ids_tensor({1, 2, 3, 4, 5, 6});
  at::Tensor vector = at::randn({1, 32}).set_requires_grad(true);
  input.injection.batch_index = at::zeros({1}, at::kLong);
  input.injection.position = at::full({1}, 2, at::kLong);
  input.injection.vectors = vector;
  auto logits = model.forward(input).logits;  // (1, T, V)
  auto loss = at::cross_entropy_loss(logits[0].narrow(0, 0, 5), at::tensor(std::vector<int64_t>{2, 3, 4, 5, 6}, at::kLong));
  loss.backward();
  ASSERT_TRUE(vector.grad().defined());
  EXPECT_GT(vector.grad().abs().sum().item<double>(), 0);
  for (auto& [name, parameter] : model.named_parameters()) {
    ASSERT_TRUE(parameter.grad().defined()) << name;
    EXPECT_TRUE(parameter.grad().isfinite().all().item<bool>()) << name;
  }
}

}  // namespace

namespace {

TEST(Qwen2Config, PresetsRoundTripThroughConfigJson) {
  for (const auto& name : nla::model::qwen2_preset_names()) {
    auto preset = nla::model::qwen2_preset(name);
    auto parsed = nla::model::Qwen2Config::from_json_text(preset.to_json_text(), name);
    EXPECT_EQ(parsed.to_json_text(), preset.to_json_text()) << name;
  }
  // The published Qwen2.5 shapes: parameter counts as Hugging Face reports them.
  EXPECT_NEAR(nla::model::qwen2_preset("qwen2.5-0.5b").num_parameters() / 1e6, 494.0, 1.0);
  EXPECT_NEAR(nla::model::qwen2_preset("qwen2.5-7b").num_parameters() / 1e9, 7.62, 0.01);
  EXPECT_EQ(nla::model::qwen2_preset("tiny").vocab_size, 151936);
  EXPECT_THROW(nla::model::qwen2_preset("huge"), nla::InputError);
  EXPECT_THROW(nla::model::Qwen2Config::from_json_text(R"({"hidden_size": 64})", "c.json"), nla::InputError);
}

}  // namespace
