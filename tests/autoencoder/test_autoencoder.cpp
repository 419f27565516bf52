// The NLA core against DESIGN section 1 and 3: the AV prompt and its marker in the real
// Qwen2.5 tokenizer, the AR input's suffix, the injection norm, mse_nrm / var_nrm / the AV
// SFT loss against direct formulas, the AR against the base model's hidden state, and
// NLA checkpoints (ours round-trip; a fake in the authors' layout loads).
#include <c10/core/GradMode.h>  // c10::NoGradGuard (LibTorch 2.x has no at:: alias here)
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <set>

#include "nla/core/atomic_file.hpp"
#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/io/safetensors.hpp"
#include "nla/model/qwen2.hpp"
#include "nla/model/qwen2_config.hpp"
#include "nla/autoencoder/checkpoint.hpp"
#include "nla/autoencoder/losses.hpp"
#include "nla/autoencoder/prompts.hpp"
#include "nla/autoencoder/reconstructor.hpp"
#include "nla/tokenizer/tokenizer.hpp"
#include "test_support.hpp"

namespace nla::test {
namespace {

using namespace nla::autoencoder;

const tokenizer::Tokenizer& qwen_tokenizer() {
  static auto tok = tokenizer::Tokenizer::from_file(repo_path("models/tokenizer.json"));
  return tok;
}

TEST(AvPrompt, MarkerIsToken149705BetweenConceptTags) {
  const auto& tok = qwen_tokenizer();
  auto prompt = av_prompt(tok);
  int64_t p = prompt.marker_position;
  ASSERT_GT(p, 0);
  EXPECT_EQ(prompt.ids[p], 149705);
  EXPECT_EQ(prompt.ids[p - 1], 29);
  EXPECT_EQ(prompt.ids[p + 1], 522);
  std::string text = tok.decode(prompt.ids);
  EXPECT_EQ(text, tokenizer::render_chat({{"user", av_user_text()}}, true));
  EXPECT_EQ(text.rfind("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud.", 0), 0u) << text;
  EXPECT_NE(text.find("that vector.\n\nHere is the vector:\n\n<concept>\xE3\x88\x8E</concept>\n\nPlease provide an "
                      "explanation.<|im_end|>\n<|im_start|>assistant\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("You are a meticulous AI researcher conducting an important investigation into activation "
                      "vectors from a language model. Your overall task is to describe the semantic content of that "
                      "activation vector.\n\nWe will pass the vector enclosed in <concept> tags into your context. "
                      "You must then produce an explanation for the vector, enclosed within <explanation> tags. The "
                      "explanation consists of 2-3 text snippets describing that vector."),
            std::string::npos);
}

TEST(AvPrompt, MarkerWithOtherNeighboursIsAnInputErrorNamingTheTokenizer) {
  try {
    av_prompt(qwen_tokenizer(), "Here: <concept> {injection_char} </concept>");
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.json"), std::string::npos) << e.what();
  }
  EXPECT_THROW(av_prompt(qwen_tokenizer(), "no marker here"), InputError);
}

// The placeholders are filled as Python's str.format fills them in the authors' loader.
TEST(Templates, FilledLikePythonFormatWithTheAuthorsNames) {
  EXPECT_EQ(ar_input_text("a cat", "<text>{explanation}</text>"), "<text>a cat</text>");
  // Braces in the explanation are text; escaped braces in the template are one brace.
  EXPECT_EQ(ar_input_text("{x}", "{{lit}} <text>{explanation}</text>"), "{lit} <text>{x}</text>");
  EXPECT_EQ(av_user_text("<concept>{injection_char}</concept>"), std::string("<concept>") + kInjectionChar + "</concept>");
  // nla's own templates written before the authors' names were adopted still load.
  EXPECT_EQ(ar_input_text("a cat", "<text>{description}</text>"), "<text>a cat</text>");
  EXPECT_EQ(av_user_text("<concept>{marker}</concept>"), std::string("<concept>") + kInjectionChar + "</concept>");
  // What str.format would refuse (KeyError, unmatched braces), and a missing placeholder.
  EXPECT_THROW(ar_input_text("a", "<text>{explanation}</text> {other}"), InputError);
  EXPECT_THROW(ar_input_text("a", "<text>{explanation</text>"), InputError);
  EXPECT_THROW(ar_input_text("a", "<text>{explanation}</text> }"), InputError);
  EXPECT_THROW(ar_input_text("a", "<text></text>"), InputError);
  EXPECT_THROW(av_user_text("<concept>{explanation}</concept>"), InputError);
  // The defaults carry the authors' names.
  EXPECT_NE(std::string(kActorTemplate).find("<concept>{injection_char}</concept>"), std::string::npos);
  EXPECT_NE(std::string(kCriticTemplate).find("<text>{explanation}</text>"), std::string::npos);
}

TEST(Injection, RescalesToTheScaleInFp32) {
  auto h = at::randn({5, 64}, at::kFloat).to(at::kBFloat16);  // (5, 64)
  auto v = injection_vectors(h, 150.0);
  EXPECT_EQ(v.scalar_type(), at::kFloat);
  auto norms = v.norm(2, {1});
  EXPECT_LT((norms - 150.0).abs().max().item<double>(), 1e-3);
  auto cos = at::cosine_similarity(v, h.to(at::kFloat), 1);
  EXPECT_GT(cos.min().item<double>(), 1 - 1e-6);
}

TEST(ArInput, LastFiveIdsAreTheCriticSuffix) {
  const auto& tok = qwen_tokenizer();
  for (std::string description : {"A cat sat.", "<explanation>\nthe word \"river\"\n</explanation>", "x", "",
                                  "numbers 1, 2, 3;"}) {
    auto ids = ar_input_ids(tok, description);
    ASSERT_GE(ids.size(), 5u);
    std::vector<int64_t> last(ids.end() - 5, ids.end());
    EXPECT_EQ(last, kCriticSuffixIds) << description;
    EXPECT_EQ(tok.decode(ids), "Summary of the following text: <text>" + description + "</text> <summary>");
  }
}

TEST(Losses, MseNrmIsTwoOneMinusCosAndScaleInvariant) {
  auto x = at::randn({7, 33}, at::kDouble), y = at::randn({7, 33}, at::kDouble);
  auto expected = 2 * (1 - at::cosine_similarity(x, y, 1));  // (7)
  EXPECT_LT((mse_nrm(x, y).to(at::kDouble) - expected).abs().max().item<double>(), 1e-5);
  EXPECT_LT((mse_nrm(3 * x, 0.5 * y) - mse_nrm(x, y)).abs().max().item<double>(), 1e-5);
  EXPECT_LT(mse_nrm(x, x).abs().max().item<double>(), 1e-6);
}

TEST(Losses, VarNrmAndFveNrmOfTheMeanPrediction) {
  auto x = at::randn({500, 16}, at::kDouble) + 2.0;  // (N, d), a shared direction
  auto n = x / x.norm(2, {1}, true) * 4.0;            // norm sqrt(16)
  double expected = n.var(0, false).mean().item<double>();
  EXPECT_NEAR(var_nrm(x), expected, 1e-5);
  // Predicting the mean of the normalised rows: mse_nrm is close to var_nrm, fve_nrm near 0
  // (not exactly: the mean is renormalised before the comparison).
  auto mean = normalise_rows(x).mean(0, true).expand({500, 16});
  double fve = fve_nrm(mse_nrm(mean, x).mean().item<double>(), var_nrm(x));
  EXPECT_NEAR(fve, 0.0, 0.2);
  EXPECT_NEAR(fve_nrm(0.0, 0.5), 1.0, 1e-12);
}

TEST(Losses, AvSftLossCountsAnswerTokensOnly) {
  int64_t B = 2, T = 5, V = 11;
  auto logits = at::randn({B, T, V}, at::kFloat);
  auto ids = at::randint(V, {B, T}, at::kLong);
  auto mask = at::zeros({B, T}, at::kBool);
  mask.index_put_({0, 3}, true);
  mask.index_put_({0, 4}, true);
  mask.index_put_({1, 2}, true);
  auto lp = at::log_softmax(logits.to(at::kDouble), -1);
  double expected = -(lp[0][2][ids[0][3].item<int64_t>()] + lp[0][3][ids[0][4].item<int64_t>()] +
                      lp[1][1][ids[1][2].item<int64_t>()])
                         .item<double>() /
                    3.0;
  EXPECT_NEAR(av_sft_loss(logits, ids, mask).item<double>(), expected, 1e-5);
  // Changing a prompt token's logits does not change the loss.
  auto changed = logits.clone();
  changed[0][0] += 10;
  EXPECT_NEAR(av_sft_loss(changed, ids, mask).item<double>(), expected, 1e-5);
}

// A small random Qwen2 checkpoint with the real tokenizer (vocabulary kept small).
model::Qwen2Config small_config(int64_t layers) {
  auto c = model::qwen2_preset("tiny");
  c.num_hidden_layers = layers;
  return c;
}

void write_base(const std::string& dir, const model::Qwen2Config& config, uint64_t seed) {
  fs::create_directories(dir);
  write_file_atomic(dir + "/config.json", config.to_json_text());
  model::write_random_checkpoint(config, seed, dir, at::kFloat, uint64_t{1} << 32);
  write_file_atomic(dir + "/tokenizer.json", read_file(repo_path("models/tokenizer.json")));
}

const std::vector<std::string> kDescriptions = {"a river", "<explanation>\nthe cat sat on the mat\n</explanation>",
                                                "numbers"};

TEST(Reconstructor, IdentityHeadReadsLayerLAtTheLastToken) {
  TempDir dir;
  write_base(dir.file("base"), small_config(4), 5);
  auto ar = Reconstructor::from_base(dir.file("base"), 1);
  EXPECT_EQ(ar.layer(), 1);
  EXPECT_EQ(ar.trunk().num_loaded_layers(), 2);
  EXPECT_FALSE(ar.trunk().has_head());
  c10::NoGradGuard no_grad;
  auto h_hat = ar.forward(ar.make_batch(qwen_tokenizer(), kDescriptions));  // (3, d)
  auto base = model::Qwen2Model::load(dir.file("base"));
  for (size_t i = 0; i < kDescriptions.size(); ++i) {
    auto ids = ar_input_ids(qwen_tokenizer(), kDescriptions[i]);
    auto input = at::tensor(std::vector<int64_t>(ids.begin(), ids.end()), at::kLong).unsqueeze(0);  // (1, T)
    model::ForwardInput in;
    in.input_ids = input;
    model::ForwardOptions options;
    options.capture_layers = {1};
    auto reference = base.forward(in, options).captured.at(1)[0][input.size(1) - 1];  // (d)
    double err = (h_hat[static_cast<int64_t>(i)] - reference).abs().max().item<double>();
    // fp32, same ops; padding changes only the masked positions' contributions (exact zeros)
    EXPECT_LT(err, 1e-4) << "description " << i;
  }
}

TEST(Checkpoint, ArRoundTripKeepsOutputsAndMeta) {
  TempDir dir;
  write_base(dir.file("base"), small_config(3), 6);
  auto ar = Reconstructor::from_base(dir.file("base"), 1);
  {
    c10::NoGradGuard no_grad;
    ar.parameters().back().add_(0.01 * at::randn({64, 64}));  // a head that is not the identity
  }
  auto meta = NlaMeta::defaults("ar", 64, 1, 12.0);
  meta.var_nrm = 0.75;
  save_ar(ar, meta, dir.file("ar"), dir.file("base"));
  auto config = model::Qwen2Config::from_file(dir.file("ar"));
  EXPECT_EQ(config.num_hidden_layers, 2);
  NlaMeta loaded_meta;
  auto loaded = load_ar(dir.file("ar"), {}, &loaded_meta);
  EXPECT_EQ(loaded_meta.role, "ar");
  EXPECT_EQ(loaded_meta.d_model, 64);
  EXPECT_EQ(loaded_meta.extraction_layer_index, 1);
  EXPECT_EQ(loaded_meta.injection_char, kInjectionChar);
  EXPECT_EQ(loaded_meta.injection_token_id, 149705);
  EXPECT_EQ(loaded_meta.critic_suffix_ids, kCriticSuffixIds);
  EXPECT_EQ(loaded_meta.actor_template, kActorTemplate);
  EXPECT_EQ(loaded_meta.critic_template, kCriticTemplate);
  EXPECT_DOUBLE_EQ(loaded_meta.injection_scale, 12.0);
  ASSERT_TRUE(loaded_meta.var_nrm.has_value());
  EXPECT_DOUBLE_EQ(*loaded_meta.var_nrm, 0.75);
  c10::NoGradGuard no_grad;
  auto a = ar.forward(ar.make_batch(qwen_tokenizer(), kDescriptions));
  auto b = loaded.forward(loaded.make_batch(qwen_tokenizer(), kDescriptions));
  EXPECT_TRUE(at::equal(a, b));
}

// critic.target and extraction.var_raw (ours): written for an AR, read back; absent (the
// authors' sidecars) reads as normalized; a raw AR without var_raw, an unknown target or a
// non-positive var_raw is an InputError naming the file and the key.
TEST(Checkpoint, ArTargetAndVarRawRoundTrip) {
  auto meta = NlaMeta::defaults("ar", 64, 1, 12.0);
  meta.ar_target = ArTarget::raw;
  meta.var_raw = 0.25;
  const std::string text = meta.to_yaml();
  EXPECT_NE(text.find("target: raw"), std::string::npos) << text;
  auto loaded = NlaMeta::from_yaml(text, "m.yaml");
  EXPECT_EQ(loaded.ar_target, ArTarget::raw);
  ASSERT_TRUE(loaded.var_raw.has_value());
  EXPECT_DOUBLE_EQ(*loaded.var_raw, 0.25);
  auto objective = loaded.ar_objective("m.yaml");
  EXPECT_EQ(objective.target, ArTarget::raw);
  EXPECT_DOUBLE_EQ(objective.var_raw, 0.25);

  auto authors = NlaMeta::defaults("ar", 64, 1, 12.0);
  std::string authors_text = authors.to_yaml();
  authors_text.erase(authors_text.find("  target: normalized\n"), std::string("  target: normalized\n").size());
  EXPECT_EQ(NlaMeta::from_yaml(authors_text, "a.yaml").ar_target, ArTarget::normalized);
  EXPECT_EQ(NlaMeta::defaults("av", 64, 1, 12.0).to_yaml().find("target:"), std::string::npos) << "AR only";

  auto expect_input_error = [](const std::string& yaml, const std::string& fragment) {
    try {
      NlaMeta::from_yaml(yaml, "bad.yaml").ar_objective("bad.yaml");
      ADD_FAILURE() << "no error for " << fragment;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("bad.yaml"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  std::string no_var = text;
  no_var.erase(no_var.find("  var_raw: 0.25\n"), std::string("  var_raw: 0.25\n").size());
  expect_input_error(no_var, "extraction.var_raw");
  std::string bogus = text;
  bogus.replace(bogus.find("target: raw"), 11, "target: unit");
  expect_input_error(bogus, "critic.target");
  std::string negative = text;
  negative.replace(negative.find("var_raw: 0.25"), 13, "var_raw: -1");
  expect_input_error(negative, "extraction.var_raw");
}

TEST(Checkpoint, AvRoundTripKeepsWeightsAndMeta) {
  TempDir dir;
  write_base(dir.file("base"), small_config(2), 8);
  auto av = model::Qwen2Model::load(dir.file("base"));
  auto meta = NlaMeta::defaults("av", 64, 1, 150.0);
  save_av(av, meta, dir.file("av"), dir.file("base"));
  NlaMeta loaded_meta;
  auto loaded = load_av(dir.file("av"), {}, &loaded_meta);
  EXPECT_EQ(loaded_meta.role, "av");
  EXPECT_DOUBLE_EQ(loaded_meta.injection_scale, 150.0);
  EXPECT_TRUE(loaded.has_head());
  auto a = av.named_parameters(), b = loaded.named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_TRUE(at::equal(a[i].second, b[i].second)) << a[i].first;
  }
  EXPECT_THROW(load_ar(dir.file("av")), InputError);  // role av is not an AR
  EXPECT_TRUE(av_prompt(tokenizer::Tokenizer::from_file(dir.file("av")), loaded_meta.actor_template).marker_position > 0);
}

// The authors' layout, written by hand: HF files of a truncated Qwen2ForCausalLM (their
// critic keeps norm/lm_head tensors, which the AR ignores), a bf16 value head, and their
// nla_meta.yaml keys.
TEST(Checkpoint, FakeCheckpointInTheAuthorsLayoutLoads) {
  TempDir dir;
  const int64_t layer = 2, d = 64;
  write_base(dir.file("authors_ar"), small_config(layer + 1), 9);
  auto head = (at::eye(d) + 0.05 * at::randn({d, d})).to(at::kBFloat16).contiguous();  // (d, d)
  io::write_safetensors(dir.file("authors_ar/value_head.safetensors"),
                        {{"weight", io::DType::BF16, {d, d}, head.data_ptr(), static_cast<size_t>(head.numel()) * 2}});
  std::string yaml = R"(schema_version: 2
kind: nla_critic
role: ar
d_model: 64
extraction:
  injection_scale: 150.0
  mse_scale: 8.0
tokens:
  injection_char: "\u320E"
  injection_token_id: 149705
  injection_left_neighbor_id: 29
  injection_right_neighbor_id: 522
  critic_suffix_ids: [1318, 29, 366, 1708, 29]
prompt_templates:
  actor: "Describe <concept>{injection_char}</concept>"
  critic: "Summary of the following text: <text>{explanation}</text> <summary>"
critic:
  extraction_layer_index: 2
)";
  write_text(dir.file("authors_ar/nla_meta.yaml"), yaml);
  NlaMeta meta;
  auto ar = load_ar(dir.file("authors_ar"), {}, &meta);
  EXPECT_EQ(ar.layer(), 2);
  EXPECT_EQ(meta.injection_char, kInjectionChar);
  EXPECT_DOUBLE_EQ(meta.injection_scale, 150.0);
  EXPECT_FALSE(meta.var_nrm.has_value());
  EXPECT_TRUE(at::equal(ar.value_head(), head.to(at::kFloat)));
  c10::NoGradGuard no_grad;
  auto h_hat = ar.forward(ar.make_batch(qwen_tokenizer(), kDescriptions));
  EXPECT_EQ(h_hat.sizes(), (std::vector<int64_t>{3, d}));
  EXPECT_TRUE(at::isfinite(h_hat).all().item<bool>());

  // A layer mismatch between the sidecar and config.json, a wrong d_model, a wrong role.
  auto bad = [&](const std::string& from, const std::string& to) {
    std::string text = yaml;
    text.replace(text.find(from), from.size(), to);
    write_text(dir.file("authors_ar/nla_meta.yaml"), text);
    EXPECT_THROW(load_ar(dir.file("authors_ar")), InputError) << to;
  };
  bad("extraction_layer_index: 2", "extraction_layer_index: 5");
  bad("d_model: 64", "d_model: 96");
  bad("role: ar", "role: av");
  bad("schema_version: 2", "schema_version: 1");
  bad("<text>{explanation}</text>", "<text>{summary}</text>");  // their loader raises KeyError too

  // The authors' training-time sidecar: role critic, extraction_layer_index at the top level.
  std::string training_time = yaml;
  training_time.replace(training_time.find("role: ar"), 8, "role: critic");
  const std::string nested = "critic:\n  extraction_layer_index: 2\n";
  training_time.replace(training_time.find(nested), nested.size(), "extraction_layer_index: 2\n");
  ASSERT_EQ(training_time.find("\ncritic:"), std::string::npos) << training_time;
  write_text(dir.file("authors_ar/nla_meta.yaml"), training_time);
  auto trained = load_ar(dir.file("authors_ar"), {}, &meta);
  EXPECT_EQ(meta.role, "ar");
  EXPECT_EQ(meta.extraction_layer_index, 2);
  EXPECT_EQ(trained.layer(), 2);
  training_time.replace(training_time.find("extraction_layer_index: 2"), 25, "extraction_layer_index: 4");
  write_text(dir.file("authors_ar/nla_meta.yaml"), training_time);
  EXPECT_THROW(load_ar(dir.file("authors_ar")), InputError);  // the top-level layer is checked too

  // An actor sidecar says role actor: an AV, not an AR.
  std::string actor = yaml;
  actor.replace(actor.find("role: ar"), 8, "role: actor");
  EXPECT_EQ(NlaMeta::from_yaml(actor, "nla_meta.yaml").role, "av");
}

// The other direction: the authors' loading logic (PyYAML + str.format with their keyword
// names, tests/tools/authors_loader_check.py) reads the sidecars nla writes.
TEST(Checkpoint, TheAuthorsLoaderFormatsOurTemplates) {
  TempDir dir;
  write_base(dir.file("base"), small_config(2), 8);
  auto av = model::Qwen2Model::load(dir.file("base"));
  save_av(av, NlaMeta::defaults("av", 64, 1, 150.0), dir.file("av"), dir.file("base"));
  auto ar = Reconstructor::from_base(dir.file("base"), 1);
  save_ar(ar, NlaMeta::defaults("ar", 64, 1, 150.0), dir.file("ar"), dir.file("base"));
  for (const char* role : {"av", "ar"}) {
    auto result = run_command(std::string(NLA_SYSTEM_PYTHON) + " " + repo_path("tests/tools/authors_loader_check.py") +
                              " " + dir.file(role));
    ASSERT_EQ(result.exit_status, 0) << role << ": " << result.err;
    auto line = nlohmann::json::parse(result.out);
    EXPECT_EQ(line["role"], role);
    EXPECT_NE(line["actor"].get<std::string>().find(std::string("<concept>") + kInjectionChar + "</concept>"),
              std::string::npos);
    EXPECT_EQ(line["critic"], "Summary of the following text: <text>the cat sat on the mat</text> <summary>");
  }
  // The check can fail: a sidecar with nla's former placeholder names raises KeyError there.
  std::string old = read_text(dir.file("ar/nla_meta.yaml"));
  old.replace(old.find("{explanation}"), 13, "{description}");
  write_text(dir.file("ar/nla_meta.yaml"), old);
  auto result = run_command(std::string(NLA_SYSTEM_PYTHON) + " " + repo_path("tests/tools/authors_loader_check.py") +
                            " " + dir.file("ar"));
  EXPECT_NE(result.exit_status, 0);
  EXPECT_NE(result.err.find("KeyError"), std::string::npos) << result.err;
}

}  // namespace
}  // namespace nla::test
