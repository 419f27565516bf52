// The AV at inference (nla::autoencoder::Verbalizer) and `nla verbalize` / `nla label
// --labeler av:DIR`: answer parsing, determinism (batch size, order of the ids, rank count),
// K samples, the injection's effect, the token cap and failed samples, and bad input.
//
// A random model never closes "<explanation>", so the success path runs on a "chain" AV
// built by hand: its blocks are the identity (o_proj and down_proj zero), each token of a
// fixed answer has a one-hot embedding, and the untied LM head maps each token to the next:
// greedy decoding then emits exactly "<explanation>\nA river.\n</explanation><|im_end|>".
#include <c10/core/GradMode.h>  // c10::NoGradGuard (LibTorch 2.x has no at:: alias here)
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <nlohmann/json.hpp>

#include <map>
#include <set>
#include <sstream>

#include "nla/core/atomic_file.hpp"
#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/model/generate.hpp"
#include "nla/model/qwen2.hpp"
#include "nla/model/qwen2_config.hpp"
#include "nla/autoencoder/checkpoint.hpp"
#include "nla/autoencoder/prompts.hpp"
#include "nla/autoencoder/verbalizer.hpp"
#include "nla/store/activation_store.hpp"
#include "nla/tokenizer/tokenizer.hpp"
#include "test_support.hpp"

namespace nla::test {
namespace {

using namespace nla::autoencoder;

const tokenizer::Tokenizer& qwen_tokenizer() {
  static auto tok = tokenizer::Tokenizer::from_file(repo_path("models/tokenizer.json"));
  return tok;
}

// ---- parse_answer ----------------------------------------------------------------------

// An answer and its explanation, or "<none>" when there is no closed tag.
std::string parsed(const std::string& text) {
  auto p = parse_answer(text);
  return p ? p->answer + "|" + p->explanation : "<none>";
}

TEST(ParseAnswer, TheExplanationIsTheStrippedTextBetweenTheTags) {
  EXPECT_EQ(parsed("<explanation>\na river\n</explanation>"), "<explanation>\na river\n</explanation>|a river");
  EXPECT_EQ(parsed("<explanation></explanation>"), "<explanation></explanation>|");
  EXPECT_EQ(parsed("<explanation> \t\n a\n b \n</explanation>"), "<explanation> \t\n a\n b \n</explanation>|a\n b");
  // Anything after the closing tag is dropped.
  EXPECT_EQ(parsed("<explanation>\nx\n</explanation> and more<|im_end|>"), "<explanation>\nx\n</explanation>|x");
}

TEST(ParseAnswer, UnclosedOrMissingTagsHaveNoAnswer) {
  EXPECT_EQ(parsed("<explanation>\na river that never"), "<none>");
  EXPECT_EQ(parsed("a river"), "<none>");
  EXPECT_EQ(parsed(""), "<none>");
  EXPECT_EQ(parsed("</explanation>"), "<none>");
  EXPECT_EQ(parsed("</explanation><explanation>x"), "<none>");  // a close before the open does not count
}

TEST(ParseAnswer, TheTagIsFoundAnywhereAsTheAuthorsSearchForIt) {
  EXPECT_EQ(parsed(" \n\t<explanation>a</explanation>"), "<explanation>a</explanation>|a");
  EXPECT_EQ(parsed("Sure! <explanation>a</explanation>"), "<explanation>a</explanation>|a");
  EXPECT_EQ(parsed("x\n<explanation>a</explanation>"), "<explanation>a</explanation>|a");
}

TEST(ParseAnswer, NestedOrSecondTagsEndAtTheFirstClose) {
  // A second opening tag inside the answer is text; the answer ends at the first close.
  EXPECT_EQ(parsed("<explanation>a <explanation>b</explanation> c</explanation>"),
            "<explanation>a <explanation>b</explanation>|a <explanation>b");
  // A second answer after the first is dropped.
  EXPECT_EQ(parsed("<explanation>a</explanation><explanation>b</explanation>"), "<explanation>a</explanation>|a");
}

TEST(ExplanationText, StoredAnswersLoseTheirTagsPlainTextStays) {
  EXPECT_EQ(explanation_text("<explanation>\nText just before: \"x\"\nDomain: wiki\n</explanation>"),
            "Text just before: \"x\"\nDomain: wiki");
  EXPECT_EQ(explanation_text("  a plain description \n"), "a plain description");
  EXPECT_EQ(explanation_text("<explanation>unclosed"), "<explanation>unclosed");
}

TEST(FailureRule, NoTagTruncationAndAnOverlongArInputFail) {
  const auto& tok = qwen_tokenizer();
  const auto ok = parse_answer("<explanation>\na river\n</explanation>");
  EXPECT_EQ(failure_of(ok, true, tok, kCriticTemplate), "");
  EXPECT_EQ(failure_of(std::nullopt, true, tok, kCriticTemplate), kFailNoClosedTag);
  EXPECT_EQ(failure_of(ok, false, tok, kCriticTemplate), kFailTruncated);  // closed, but cut by the limit
  // 300 tokens of AR input pass, 301 fail: " a" is one token in Qwen2.5.
  const int64_t frame = static_cast<int64_t>(ar_input_ids(tok, "", kCriticTemplate).size());
  auto with_words = [&](int64_t words) {
    std::string text = "<explanation>";
    for (int64_t i = 0; i < words; ++i) text += " a";
    return parse_answer(text + "</explanation>");
  };
  ASSERT_EQ(static_cast<int64_t>(ar_input_ids(tok, with_words(kMaxArInputTokens - frame)->explanation,
                                              kCriticTemplate).size()),
            kMaxArInputTokens);
  EXPECT_EQ(failure_of(with_words(kMaxArInputTokens - frame), true, tok, kCriticTemplate), "");
  EXPECT_EQ(failure_of(with_words(kMaxArInputTokens - frame + 1), true, tok, kCriticTemplate), kFailArInputTooLong);
}

TEST(AnswerIds, AreTheAnswerThenImEnd) {
  auto ids = answer_ids(qwen_tokenizer(), "<explanation>\nA river.\n</explanation>");
  ASSERT_GE(ids.size(), 2u);
  EXPECT_EQ(ids.back(), kImEndTokenId);
  std::vector<tokenizer::TokenId> text(ids.begin(), ids.end() - 1);
  EXPECT_EQ(qwen_tokenizer().decode(text), "<explanation>\nA river.\n</explanation>");
}

// ---- the verbalizer on a random tiny model ---------------------------------------------

class RandomAv : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = new model::Qwen2Model(model::Qwen2Model::random_init(model::qwen2_preset("tiny"), 7));
    verbalizer_ = new Verbalizer(*model_, qwen_tokenizer(), 10.0);
  }
  static void TearDownTestSuite() {
    delete verbalizer_;
    delete model_;
  }
  static at::Tensor activations(int64_t n, uint64_t seed) {
    auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
    return at::randn({n, 64}, generator, at::kFloat);  // (n, d)
  }
  using Key = std::pair<int64_t, int64_t>;  // (sample id, sample index)
  static std::map<Key, std::vector<int64_t>> by_key(const std::vector<Verbalization>& results) {
    std::map<Key, std::vector<int64_t>> out;
    for (const auto& v : results) out[{v.sample_id, v.sample_index}] = v.tokens;
    return out;
  }
  static model::Qwen2Model* model_;
  static Verbalizer* verbalizer_;
};
model::Qwen2Model* RandomAv::model_ = nullptr;
Verbalizer* RandomAv::verbalizer_ = nullptr;

TEST_F(RandomAv, OutputDoesNotDependOnBatchSizeOrOrderOfTheIds) {
  auto h = activations(5, 1);
  std::vector<int64_t> ids = {10, 11, 12, 13, 14};
  for (double temperature : {0.0, 0.9}) {
    VerbalizeOptions options;
    options.max_new_tokens = 10;
    options.temperature = temperature;
    options.seed = 3;
    options.samples_per_activation = 2;
    options.batch = 32;
    auto all = verbalizer_->verbalize(h, ids, options);
    ASSERT_EQ(all.size(), 10u);
    for (size_t f = 0; f < all.size(); ++f) {  // activation-major
      EXPECT_EQ(all[f].sample_id, ids[f / 2]);
      EXPECT_EQ(all[f].sample_index, static_cast<int64_t>(f % 2));
    }
    // Reversed ids and rows, batches of 3 sequences (a sample's batch-mates change).
    auto reversed = h.flip({0});
    std::vector<int64_t> reversed_ids(ids.rbegin(), ids.rend());
    options.batch = 3;
    auto other = verbalizer_->verbalize(reversed, reversed_ids, options);
    EXPECT_EQ(by_key(all), by_key(other)) << "temperature " << temperature;
    // A subset: the same samples as in the full call.
    options.batch = 1;
    auto one = verbalizer_->verbalize(h.narrow(0, 2, 1), {12}, options);
    EXPECT_EQ(one[0].tokens, all[4].tokens);
    EXPECT_EQ(one[1].tokens, all[5].tokens);
  }
}

TEST_F(RandomAv, KSamplesDifferWithTemperatureAndAgreeWhenGreedy) {
  auto h = activations(2, 2);
  VerbalizeOptions options;
  options.max_new_tokens = 8;
  options.samples_per_activation = 4;
  options.temperature = 1.0;
  auto sampled = verbalizer_->verbalize(h, {0, 1}, options);
  for (int64_t i = 0; i < 2; ++i) {
    std::set<std::vector<int64_t>> distinct;
    for (int64_t j = 0; j < 4; ++j) distinct.insert(sampled[static_cast<size_t>(i * 4 + j)].tokens);
    EXPECT_GT(distinct.size(), 1u) << "activation " << i;
  }
  // Another seed gives other samples; the same seed the same ones.
  options.seed = 1;
  auto reseeded = verbalizer_->verbalize(h, {0, 1}, options);
  EXPECT_NE(by_key(sampled), by_key(reseeded));
  options.seed = 0;
  EXPECT_EQ(by_key(sampled), by_key(verbalizer_->verbalize(h, {0, 1}, options)));
  options.temperature = 0.0;
  auto greedy = verbalizer_->verbalize(h, {0, 1}, options);
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 1; j < 4; ++j)
      EXPECT_EQ(greedy[static_cast<size_t>(i * 4 + j)].tokens, greedy[static_cast<size_t>(i * 4)].tokens);
}

TEST_F(RandomAv, TheInjectionChangesTheLogitsAndOnlyItsDirectionMatters) {
  // The first step's logits of the verbalizer's prompt with two different activations
  // injected at the marker.
  auto h = activations(2, 3);
  auto vectors = injection_vectors(h, verbalizer_->injection_scale());  // (2, d)
  const auto& prompt = verbalizer_->prompt();
  std::vector<model::GenerationPrompt> prompts(2);
  for (int64_t i = 0; i < 2; ++i) {
    prompts[static_cast<size_t>(i)].ids.assign(prompt.ids.begin(), prompt.ids.end());
    prompts[static_cast<size_t>(i)].injections.emplace_back(prompt.marker_position, vectors[i]);
  }
  model::GenerationOptions gen;
  gen.max_new_tokens = 1;
  gen.return_logits = true;
  auto result = model::generate(*model_, prompts, gen);
  ASSERT_EQ(result.step_logits.size(), 1u);
  auto logits = result.step_logits[0];  // (2, V)
  double difference = (logits[0] - logits[1]).abs().max().item<double>();
  std::cout << "max |logits(h0) - logits(h1)| at the first step: " << difference << "\n";
  EXPECT_GT(difference, 1e-3);

  // The verbalizer injects the same: its greedy first token is the argmax of these logits.
  VerbalizeOptions options;
  options.max_new_tokens = 6;
  auto out = verbalizer_->verbalize(h, {0, 1}, options);
  EXPECT_EQ(out[0].tokens[0], logits[0].argmax().item<int64_t>());
  EXPECT_EQ(out[1].tokens[0], logits[1].argmax().item<int64_t>());
  // h is rescaled to the injection scale: 4h (exact in fp32) gives the same text.
  auto scaled = verbalizer_->verbalize(h * 4.0, {0, 1}, options);
  EXPECT_EQ(scaled[0].tokens, out[0].tokens);
  EXPECT_EQ(scaled[1].tokens, out[1].tokens);
}

TEST_F(RandomAv, MaxNewTokensCapsTheAnswerAndAnUnclosedAnswerFails) {
  VerbalizeOptions options;
  options.max_new_tokens = 5;
  options.temperature = 0.7;
  options.samples_per_activation = 3;
  for (const auto& v : verbalizer_->verbalize(activations(3, 4), {0, 1, 2}, options)) {
    EXPECT_LE(v.tokens.size(), 5u);
    EXPECT_TRUE(v.failed) << v.text;
    EXPECT_EQ(v.description, "");
  }
}

TEST_F(RandomAv, BadActivationsAreInputErrors) {
  VerbalizeOptions options;
  options.max_new_tokens = 2;
  EXPECT_THROW(verbalizer_->verbalize(at::randn({2, 32}), {0, 1}, options), InputError);  // width
  auto zero = activations(2, 5);
  zero[1].zero_();
  try {
    verbalizer_->verbalize(zero, {7, 8}, options);
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("sample 8"), std::string::npos) << e.what();
  }
  options.top_p = 0;
  EXPECT_THROW(verbalizer_->verbalize(activations(1, 6), {0}, options), InputError);
  EXPECT_TRUE(verbalizer_->verbalize(activations(0, 6), {}, VerbalizeOptions{}).empty());
}

// ---- the chain AV: a model that answers "<explanation>\nA river.\n</explanation>" -------

const std::string kChainAnswer = "<explanation>\nA river.\n</explanation>";

// The answer as distinct single tokens (not the canonical tokenization, which repeats
// "ex"/"planation"): "<" "ex" "planation" ">\n" "A" " river" ".\n" "</" "expl" "an" "ation" ">".
std::vector<int64_t> chain_tokens() {
  const auto& tok = qwen_tokenizer();
  std::vector<int64_t> chain;
  for (const char* piece : {"<", "ex", "planation", ">\n", "A", " river", ".\n", "</", "expl", "an", "ation", ">"}) {
    auto ids = tok.encode(piece);
    EXPECT_EQ(ids.size(), 1u) << piece;
    chain.push_back(ids.at(0));
  }
  return chain;
}

// Identity blocks; token chain[k] (after the prompt's last token) is embedded as e_k and
// the head maps e_k to chain[k + 1]; the last answer token maps to `stop`.
model::Qwen2Model chain_model(int64_t stop) {
  auto config = model::qwen2_preset("tiny");
  config.num_hidden_layers = 1;
  config.tie_word_embeddings = false;
  auto m = model::Qwen2Model::random_init(config, 1);
  c10::NoGradGuard no_grad;
  auto& w = m.weights();
  for (auto& block : w.layers) {
    block.o_proj_weight.zero_();
    block.down_proj_weight.zero_();
  }
  w.embed_tokens.zero_();
  w.lm_head.zero_();
  auto prompt = av_prompt(qwen_tokenizer());
  std::vector<int64_t> inputs = {static_cast<int64_t>(prompt.ids.back())};
  for (int64_t id : chain_tokens()) inputs.push_back(id);
  std::vector<int64_t> outputs(inputs.begin() + 1, inputs.end());
  outputs.push_back(stop);
  EXPECT_EQ(std::set<int64_t>(inputs.begin(), inputs.end()).size(), inputs.size()) << "chain tokens must be distinct";
  for (size_t k = 0; k < inputs.size(); ++k) {
    w.embed_tokens[inputs[k]][static_cast<int64_t>(k)] = 1.0;
    w.lm_head[outputs[k]][static_cast<int64_t>(k)] = 10.0;
  }
  return m;
}

TEST(ChainAv, ClosedAnswerSucceedsAndACapBeforeTheCloseFails) {
  std::vector<tokenizer::TokenId> chain;
  for (int64_t id : chain_tokens()) chain.push_back(static_cast<tokenizer::TokenId>(id));
  ASSERT_EQ(qwen_tokenizer().decode(chain), kChainAnswer);
  for (int64_t stop : {kImEndTokenId, kEndOfTextTokenId}) {
    auto m = chain_model(stop);
    Verbalizer verbalizer(m, qwen_tokenizer(), 150.0);
    VerbalizeOptions options;
    auto h = at::randn({2, 64});
    auto out = verbalizer.verbalize(h, {0, 1}, options);
    for (const auto& v : out) {
      EXPECT_FALSE(v.failed) << v.text;
      EXPECT_EQ(v.failure, "");
      EXPECT_EQ(v.description, kChainAnswer);
      EXPECT_EQ(v.explanation, "A river.");
      EXPECT_EQ(v.text, kChainAnswer);  // the stop token is not text
      ASSERT_EQ(v.tokens.size(), chain.size() + 1);
      EXPECT_EQ(v.tokens.back(), stop);
    }
    // Capped one token before the closing ">": unclosed, failed.
    options.max_new_tokens = static_cast<int64_t>(chain.size()) - 1;
    for (const auto& v : verbalizer.verbalize(h, {0, 1}, options)) {
      EXPECT_TRUE(v.failed);
      EXPECT_EQ(v.failure, kFailNoClosedTag);
      EXPECT_EQ(v.description, "");
      EXPECT_EQ(v.explanation, "");
      EXPECT_EQ(v.text, kChainAnswer.substr(0, kChainAnswer.size() - 1));
    }
    // Capped right at the closing ">" (no stop token): closed, but truncated: fails.
    options.max_new_tokens = static_cast<int64_t>(chain.size());
    for (const auto& v : verbalizer.verbalize(h, {0, 1}, options)) {
      EXPECT_TRUE(v.failed) << v.text;
      EXPECT_EQ(v.failure, kFailTruncated);
      EXPECT_EQ(v.text, kChainAnswer);
    }
    // One token more: the stop token fits, a success.
    options.max_new_tokens = static_cast<int64_t>(chain.size()) + 1;
    for (const auto& v : verbalizer.verbalize(h, {0, 1}, options)) EXPECT_FALSE(v.failed) << v.text;
    // The same answer under a critic template whose AR input exceeds 300 tokens: fails.
    std::string long_critic = "Summary of the following text:";
    for (int i = 0; i < kMaxArInputTokens; ++i) long_critic += " a";
    long_critic += " <text>{explanation}</text> <summary>";
    Verbalizer long_ar(m, qwen_tokenizer(), 150.0, kActorTemplate, long_critic);
    for (const auto& v : long_ar.verbalize(h, {0, 1}, options)) EXPECT_EQ(v.failure, kFailArInputTooLong) << v.text;
  }
}

// ---- nla verbalize and nla label --labeler av:DIR ----------------------------------------

const std::string kMpi = "OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1 OMP_NUM_THREADS=1 " +
                         std::string(MPIEXEC) + " -n ";

std::vector<nlohmann::json> parse_jsonl(const std::string& text) {
  std::vector<nlohmann::json> records;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) records.push_back(nlohmann::json::parse(line));
  return records;
}

int count_lines(const std::string& text) {
  int lines = 0;
  for (char c : text) lines += c == '\n';
  return lines;
}

class VerbalizeCli : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    auto init = run_nla("init-model --preset tiny --seed 3 --tokenizer " + repo_path("models/tokenizer.json") +
                        " --out " + dir_->file("av"));
    ASSERT_EQ(init.exit_status, 0) << init.err;
    // The random model as an AV of layer 1 (nla_meta.yaml added), and the chain AV.
    write_text(dir_->file("av/nla_meta.yaml"), NlaMeta::defaults("av", 64, 1, 10.0).to_yaml());
    auto chain = chain_model(kImEndTokenId);
    save_av(chain, NlaMeta::defaults("av", 64, 3, 10.0), dir_->file("chain_av"), dir_->file("av"));
    auto extract = run_nla("extract --model " + dir_->file("av") + " --corpus " + repo_path("data/corpus") +
                           " --max-docs 40 --doc-stride 8 --layers 1,3 --positions-per-doc 2 --min-position 16"
                           " --max-tokens 64 --batch-docs 8 --seed 0 --threads 1 --out " + dir_->file("acts.h5"));
    ASSERT_EQ(extract.exit_status, 0) << extract.err;
    n_samples_ = store::ActivationStore(dir_->file("acts.h5")).n_samples();
    ASSERT_GE(n_samples_, 6);
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string av_args() {
    return "verbalize --av " + dir_->file("av") + " --store " + dir_->file("acts.h5") + " --max-new-tokens 6";
  }
  static TempDir* dir_;
  static int64_t n_samples_;
};
TempDir* VerbalizeCli::dir_ = nullptr;
int64_t VerbalizeCli::n_samples_ = 0;

TEST_F(VerbalizeCli, WritesOneLinePerSampleInRowOrder) {
  std::string out = dir_->file("v.jsonl");
  auto result = run_nla(av_args() + " --first 4 --samples-per-activation 2 --temperature 0.8 --out " + out);
  ASSERT_EQ(result.exit_status, 0) << result.err;
  auto records = parse_jsonl(read_text(out));
  ASSERT_EQ(records.size(), 8u);
  for (size_t i = 0; i < records.size(); ++i) {
    EXPECT_EQ(records[i]["row"], static_cast<int64_t>(i / 2));
    EXPECT_EQ(records[i]["sample_index"], static_cast<int64_t>(i % 2));
    EXPECT_TRUE(records[i]["failed"].get<bool>());  // 6 tokens of a random model
    EXPECT_EQ(records[i]["description"], "");
    EXPECT_TRUE(records[i]["text"].is_string());
  }
  auto meta = nlohmann::json::parse(read_text(out + ".meta.json"));
  EXPECT_EQ(meta["layer"], 1);  // from nla_meta.yaml
  EXPECT_EQ(meta["failed"], 8);
  EXPECT_NE(meta["provenance"]["command_line"].get<std::string>().find("verbalize"), std::string::npos);

  // Without --out: the same JSON lines on stdout, rows in the order given.
  auto printed = run_nla(av_args() + " --samples 3,1");
  ASSERT_EQ(printed.exit_status, 0) << printed.err;
  auto lines = parse_jsonl(printed.out);
  ASSERT_EQ(lines.size(), 2u) << printed.out;
  EXPECT_EQ(lines[0]["row"], 3);
  EXPECT_EQ(lines[1]["row"], 1);

  // The chain AV's answers succeed (its layer 3 from nla_meta.yaml).
  auto chain = run_nla("verbalize --av " + dir_->file("chain_av") + " --store " + dir_->file("acts.h5") + " --first 3");
  ASSERT_EQ(chain.exit_status, 0) << chain.err;
  auto answers = parse_jsonl(chain.out);
  ASSERT_EQ(answers.size(), 3u);
  for (const auto& a : answers) {
    EXPECT_FALSE(a["failed"].get<bool>());
    EXPECT_EQ(a["description"], kChainAnswer);
  }
}

TEST_F(VerbalizeCli, OneAndTwoRanksWriteTheSameFile) {
  std::string args = av_args() + " --temperature 1.0 --samples-per-activation 2 --seed 5 --batch 3 --threads 1";
  auto one = run_nla(args + " --out " + dir_->file("one.jsonl"));
  ASSERT_EQ(one.exit_status, 0) << one.err;
  auto two = run_command(kMpi + "2 " + NLA_BINARY + " " + args + " --out " + dir_->file("two.jsonl"));
  ASSERT_EQ(two.exit_status, 0) << two.err;
  std::string a = read_text(dir_->file("one.jsonl")), b = read_text(dir_->file("two.jsonl"));
  EXPECT_EQ(count_lines(a), 2 * n_samples_);
  EXPECT_EQ(a, b);
}

TEST_F(VerbalizeCli, BadInputExitsTwoWithOneLine) {
  auto expect_one_line = [](const CommandResult& r, const std::string& needle) {
    EXPECT_EQ(r.exit_status, 2) << r.err;
    EXPECT_EQ(count_lines(r.err), 1) << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
  };
  expect_one_line(run_nla(av_args() + " --layer 2 --out " + dir_->file("never.jsonl")), "no layer 2");
  EXPECT_FALSE(fs::exists(dir_->file("never.jsonl")));
  // The AV's nla_meta.yaml says layer 2, which the store lacks.
  fs::create_directories(dir_->file("av_l2"));
  for (const char* name : {"config.json", "model.safetensors", "tokenizer.json"})
    fs::copy_file(dir_->file(std::string("av/") + name), dir_->file(std::string("av_l2/") + name));
  write_text(dir_->file("av_l2/nla_meta.yaml"), NlaMeta::defaults("av", 64, 2, 10.0).to_yaml());
  expect_one_line(run_nla("verbalize --av " + dir_->file("av_l2") + " --store " + dir_->file("acts.h5")),
                  "no layer 2");
  // Width: an AV of d_model 96 against a store of width 64.
  write_text(dir_->file("av_l2/nla_meta.yaml"), NlaMeta::defaults("av", 96, 1, 10.0).to_yaml());
  auto width = run_nla("verbalize --av " + dir_->file("av_l2") + " --store " + dir_->file("acts.h5"));
  expect_one_line(width, "width 64");
  EXPECT_NE(width.err.find("d_model 96"), std::string::npos) << width.err;
  // A plain model directory is not an AV checkpoint.
  fs::remove(dir_->file("av_l2/nla_meta.yaml"));
  expect_one_line(run_nla("verbalize --av " + dir_->file("av_l2") + " --store " + dir_->file("acts.h5")),
                  "nla_meta.yaml");
  expect_one_line(run_nla(av_args() + " --samples 0,x"), "option 'samples'");
  expect_one_line(run_nla(av_args() + " --samples 100000"), "row 100000");
  // The same under two ranks: rank 0 alone reports it (the launcher may add its own
  // summary lines), exit 2.
  auto two = run_command(kMpi + "2 " + NLA_BINARY + " " + av_args() + " --layer 2");
  EXPECT_EQ(two.exit_status, 2) << two.err;
  EXPECT_NE(two.err.find("nla verbalize: "), std::string::npos) << two.err;
  EXPECT_EQ(two.err.find("nla verbalize: "), two.err.rfind("nla verbalize: ")) << two.err;
}

TEST_F(VerbalizeCli, LabelWithAnAvFillsTheDescriptions) {
  // The chain AV on two ranks: every sample gets its (closed) answer.
  fs::copy_file(dir_->file("acts.h5"), dir_->file("chain.h5"));
  auto chain = run_command(kMpi + "2 " + NLA_BINARY + " label --store " + dir_->file("chain.h5") + " --labeler av:" +
                           dir_->file("chain_av") + " --name av --threads 1");
  ASSERT_EQ(chain.exit_status, 0) << chain.err;
  {
    store::ActivationStore acts(dir_->file("chain.h5"));
    auto descriptions = acts.read_descriptions("av");
    ASSERT_EQ(static_cast<int64_t>(descriptions.size()), n_samples_);
    for (const auto& d : descriptions) EXPECT_EQ(d, kChainAnswer);
  }
  // The random AV fails every sample within 4 tokens: "" stored, the count reported.
  auto random = run_nla("label --store " + dir_->file("acts.h5") + " --labeler av:" + dir_->file("av") +
                        " --name random --max-new-tokens 4 --out " + dir_->file("random.h5"));
  ASSERT_EQ(random.exit_status, 0) << random.err;
  EXPECT_NE(random.err.find(std::to_string(n_samples_) + " of " + std::to_string(n_samples_) + " samples failed"),
            std::string::npos)
      << random.err;
  store::ActivationStore acts(dir_->file("random.h5"));
  auto descriptions = acts.read_descriptions("random");
  ASSERT_EQ(static_cast<int64_t>(descriptions.size()), n_samples_);
  for (const auto& d : descriptions) EXPECT_EQ(d, "");
  // A layer the store lacks: one line, exit 2.
  auto bad = run_nla("label --store " + dir_->file("acts.h5") + " --labeler av:" + dir_->file("av") + " --layer 2");
  EXPECT_EQ(bad.exit_status, 2);
  EXPECT_EQ(count_lines(bad.err), 1) << bad.err;
}

}  // namespace
}  // namespace nla::test
