// nla steer-audit (include/nla/steer/audit.hpp): a state built by setup(), the unsteered
// median norm, then one short loop of named phases per (direction, scale) and prompt chunk.
#include "nla/steer/audit.hpp"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/GradMode.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <numeric>
#include <optional>
#include <sstream>
#include <tuple>

#include "nla/autoencoder/checkpoint.hpp"
#include "nla/autoencoder/prompts.hpp"
#include "nla/autoencoder/reconstructor.hpp"
#include "nla/autoencoder/verbalizer.hpp"
#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/core/log.hpp"
#include "nla/core/progress.hpp"
#include "nla/core/seeding.hpp"
#include "nla/core/world.hpp"
#include "nla/dist/text_collectives.hpp"
#include "nla/eval/metrics.hpp"  // to_activation_scale
#include "nla/model/generate.hpp"
#include "nla/steer/audit_file.hpp"
#include "nla/steer/steering_vector.hpp"
#include "nla/steer/texts.hpp"

namespace nla::steer {

std::vector<double> parse_scales(const std::string& text) {
  std::vector<double> scales = {0.0};
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    size_t used = 0;
    double value = std::nan("");
    try {
      value = std::stod(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    NLA_CHECK_INPUT(used > 0 && used == item.size() && std::isfinite(value) && value >= 0,
                    "option 'scales': expected comma-separated finite numbers >= 0 (units of the layer's median "
                    "norm), got '", text, "'");
    scales.push_back(value);
  }
  std::sort(scales.begin(), scales.end());
  scales.erase(std::unique(scales.begin(), scales.end()), scales.end());
  NLA_CHECK_INPUT(scales.size() > 1, "option 'scales': expected at least one scale > 0, got '", text, "'");
  return scales;
}

bool mentions_word(const std::string& text, const std::vector<std::string>& words) {
  auto lower = [](std::string s) {
    for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return s;
  };
  auto is_word_char = [](char ch) { return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_'; };
  const std::string haystack = lower(text);
  for (const auto& word : words) {
    const std::string needle = lower(word);
    for (size_t at = haystack.find(needle); !needle.empty() && at != std::string::npos;
         at = haystack.find(needle, at + 1)) {
      const bool starts = at == 0 || !is_word_char(haystack[at - 1]) || !is_word_char(needle.front());
      const size_t end = at + needle.size();
      const bool ends = end == haystack.size() || !is_word_char(haystack[end]) || !is_word_char(needle.back());
      if (starts && ends) return true;
    }
  }
  return false;
}

namespace {

std::vector<std::string> parse_words(const std::string& text) {
  std::vector<std::string> words;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    const auto first = item.find_first_not_of(" \t"), last = item.find_last_not_of(" \t");
    if (first != std::string::npos) words.push_back(item.substr(first, last - first + 1));
  }
  return words;
}

// K distinct offsets of [0, n), sorted, drawn from (seed, prompt): the same prompt samples
// the same offsets at every scale when its continuations are as long.
std::vector<int64_t> sample_offsets(int64_t n, int64_t k, uint64_t seed, int64_t prompt) {
  std::vector<int64_t> offsets(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) offsets[static_cast<size_t>(i)] = i;
  uint64_t state = mix_seeds(mix_seeds(seed, 0x706f73ULL), static_cast<uint64_t>(prompt));
  const int64_t take = std::min(n, k);
  for (int64_t i = 0; i < take; ++i) {  // partial Fisher-Yates
    const int64_t j = i + static_cast<int64_t>(splitmix64_next(state) % static_cast<uint64_t>(n - i));
    std::swap(offsets[static_cast<size_t>(i)], offsets[static_cast<size_t>(j)]);
  }
  offsets.resize(static_cast<size_t>(take));
  std::sort(offsets.begin(), offsets.end());
  return offsets;
}

double cosine(const at::Tensor& a, const at::Tensor& b) {
  const double denominator = a.norm().item<double>() * b.norm().item<double>();
  return denominator > 0 ? a.dot(b).item<double>() / denominator : std::nan("");
}

// JSON has no NaN: a failed sample's metrics travel as null.
nlohmann::json number(double value) { return std::isnan(value) ? nlohmann::json(nullptr) : nlohmann::json(value); }
double number_of(const nlohmann::json& value) {
  return value.is_null() ? std::numeric_limits<double>::quiet_NaN() : value.get<double>();
}

nlohmann::json to_json(const AuditSample& s) {
  return {{"d", s.direction},      {"s", s.scale},          {"p", s.prompt},       {"k", s.slot},
          {"t", s.position},       {"cv", number(s.cos_v)}, {"pv", number(s.proj_v)}, {"cd", number(s.cos_dir)},
          {"acv", s.act_cos_v},    {"apv", s.act_proj_v},   {"kl", s.kl},           {"m", s.mentions},
          {"f", s.failed},         {"desc", s.description}, {"expl", s.explanation}};
}
AuditSample sample_of(const nlohmann::json& j) {
  AuditSample s;
  s.direction = j["d"];
  s.scale = j["s"];
  s.prompt = j["p"];
  s.slot = j["k"];
  s.position = j["t"];
  s.cos_v = number_of(j["cv"]);
  s.proj_v = number_of(j["pv"]);
  s.cos_dir = number_of(j["cd"]);
  s.act_cos_v = j["acv"];
  s.act_proj_v = j["apv"];
  s.kl = j["kl"];
  s.mentions = j["m"];
  s.failed = j["f"];
  s.description = j["desc"];
  s.explanation = j["expl"];
  return s;
}

int direction_order(const std::string& direction) { return direction == kVectorDirection ? 0 : 1; }

// One steered activation on its way from capture to scores.
struct Captured {
  int64_t prompt = 0, slot = 0, position = 0;
  at::Tensor activation;  // (C) float32, CPU
  double kl = 0;
};

class SteerAudit {
 public:
  SteerAudit(const SteerAuditOptions& options, const dist::Compute& compute) : o_(options), compute_(compute) {}

  // ---- setup: every input checked on every rank before any output (one line when bad)
  void setup() {
    run_on_every_rank(MPI_COMM_WORLD, [&] {
      validate();
      config_ = model::Qwen2Config::from_file(o_.model);
      steering_vector_ = read_steering_vector(o_.vector, config_.hidden_size, "vector");
      av_meta_ = autoencoder::NlaMeta::read(o_.av);
      layer_ = o_.layer >= 0 ? o_.layer : steering_vector_.layer() >= 0 ? steering_vector_.layer()
                                                                        : av_meta_.extraction_layer_index;
      NLA_CHECK_INPUT(layer_ >= 0 && layer_ < config_.num_hidden_layers, "option 'layer': expected 0..",
                      config_.num_hidden_layers - 1, " (", o_.model, " has ", config_.num_hidden_layers,
                      " blocks), got ", layer_);
      NLA_CHECK_INPUT(av_meta_.d_model == config_.hidden_size, o_.av, "/nla_meta.yaml: d_model ", av_meta_.d_model,
                      " but ", o_.model, " has hidden size ", config_.hidden_size);
      words_ = parse_words(o_.concept_words);
      scales_ = parse_scales(o_.scales);
      tokenizer_.emplace(tokenizer::Tokenizer::from_file(o_.tokenizer.empty() ? o_.model : o_.tokenizer));
      prompt_texts_ = read_texts(o_.prompts, o_.text_field, "prompts", o_.max_prompts);
      prompts_ = tokenize_texts(*tokenizer_, prompt_texts_, o_.max_prompt_tokens, "prompts");
      model::LoadOptions load;
      load.device = compute_.device;
      load.dtype = compute_.dtype;
      net_.emplace(model::Qwen2Model::load(o_.model, load));
      av_.emplace(autoencoder::load_av(o_.av, load));
      av_tokenizer_.emplace(tokenizer::Tokenizer::from_file(o_.av));
      ar_.emplace(autoencoder::load_ar(o_.ar, load, &ar_meta_));
      NLA_CHECK_INPUT(ar_->d_model() == config_.hidden_size, o_.ar, ": the AR reconstructs ", ar_->d_model(),
                      " dimensions but ", o_.model, " has hidden size ", config_.hidden_size);
      ar_tokenizer_.emplace(tokenizer::Tokenizer::from_file(o_.ar));
    });
    verbalizer_.emplace(*av_, *av_tokenizer_, av_meta_.injection_scale, av_meta_.actor_template,
                        av_meta_.critic_template);
    // Unit directions, float64 on the CPU for the scores; the random one seeded by --seed.
    vector_unit_ = steering_vector_.vector.to(at::kDouble);
    vector_unit_ = vector_unit_ / vector_unit_.norm();
    auto generator = at::make_generator<at::CPUGeneratorImpl>(mix_seeds(static_cast<uint64_t>(o_.seed), 0x72616e64ULL));
    random_unit_ = at::randn({config_.hidden_size}, generator, at::TensorOptions().dtype(at::kDouble));
    random_unit_ = random_unit_ / random_unit_.norm();
    chunks_ = rank_chunks(static_cast<int64_t>(prompts_.size()), o_.batch, world_rank(), world_size());
    run_on_root(MPI_COMM_WORLD, [&] {
      NLA_CHECK_INPUT(o_.overwrite || !fs::exists(fs::join(o_.out, "audit.h5")), fs::join(o_.out, "audit.h5"),
                      ": exists; pass --overwrite to replace it");
      fs::create_directories(o_.out);
      if (av_meta_.extraction_layer_index >= 0 && av_meta_.extraction_layer_index != layer_)
        log_warn("steer-audit: the AV was trained on layer %lld and reads layer %d here",
                 static_cast<long long>(av_meta_.extraction_layer_index), layer_);
    });
  }

  // ---- the unsteered prompts' median activation norm at the layer: the unit of the scales
  void measure_median_norm() {
    std::vector<double> norms;
    for (const auto& chunk : chunks_)
      for (const auto& residual : layer_residuals(*net_, tokens_of(chunk), layer_)) {
        at::Tensor row_norms = typical_rows(residual, kFirstTypicalPosition).to(at::kDouble).norm(2, {1}).contiguous();
        norms.insert(norms.end(), row_norms.data_ptr<double>(), row_norms.data_ptr<double>() + row_norms.numel());
      }
    median_norm_ = gathered_median(MPI_COMM_WORLD, norms);
    NLA_CHECK(std::isfinite(median_norm_) && median_norm_ > 0, "steer-audit: the median activation norm at layer ",
              layer_, " is ", median_norm_);
  }

  // ---- every (direction, scale): scale 0 once (both directions' baseline)
  void run_conditions() {
    std::vector<std::pair<std::string, double>> conditions = {{kVectorDirection, 0.0}};
    for (size_t i = 1; i < scales_.size(); ++i)
      for (const char* direction : {kVectorDirection, kRandomDirection}) conditions.emplace_back(direction, scales_[i]);
    Progress progress("steer-audit", static_cast<int64_t>(conditions.size() * chunks_.size()), "chunks");
    c10::NoGradGuard no_grad;
    for (const auto& [direction, scale] : conditions) {
      const auto steering = steering_for(direction, scale);
      for (const auto& chunk : chunks_) {
        const auto continuations = generate(chunk, steering, direction, scale);
        auto captured = capture(chunk, continuations, steering, scale);
        describe_and_score(captured, direction, scale);
        char extra[64];
        std::snprintf(extra, sizeof extra, "%s x %g", direction.c_str(), scale);
        progress.advance(1, extra);
      }
    }
    progress.finish();
  }

  // ---- rank 0: every rank's records in a fixed order, audit.h5 and summary.csv
  SteerAuditSummary write(const std::string& provenance_json) {
    std::string mine;
    for (const auto& sample : samples_) mine += "s" + to_json(sample).dump() + "\n";
    for (const auto& c : continuations_)
      mine += "c" + nlohmann::json{{"d", c.direction}, {"s", c.scale}, {"p", c.prompt}, {"x", c.text}, {"n", c.tokens}}
                        .dump() + "\n";
    const auto parts = dist::gather_text(MPI_COMM_WORLD, mine, 0);
    SteerAuditSummary summary;
    run_on_root(MPI_COMM_WORLD, [&] {
      AuditResults results;
      for (const auto& part : parts) {
        std::stringstream lines(part);
        std::string line;
        while (std::getline(lines, line)) {
          const auto j = nlohmann::json::parse(line.substr(1));
          if (line[0] == 's') {
            results.samples.push_back(sample_of(j));
          } else {
            results.continuations.push_back({j["d"], j["s"], j["p"], j["x"], j["n"]});
          }
        }
      }
      std::sort(results.samples.begin(), results.samples.end(), [](const AuditSample& a, const AuditSample& b) {
        return std::make_tuple(direction_order(a.direction), a.scale, a.prompt, a.slot) <
               std::make_tuple(direction_order(b.direction), b.scale, b.prompt, b.slot);
      });
      std::sort(results.continuations.begin(), results.continuations.end(),
                [](const AuditContinuation& a, const AuditContinuation& b) {
                  return std::make_tuple(direction_order(a.direction), a.scale, a.prompt) <
                         std::make_tuple(direction_order(b.direction), b.scale, b.prompt);
                });
      results.scales = scales_;
      results.prompts = prompt_texts_;
      results.layer = layer_;
      results.median_norm = median_norm_;
      results.vector_norm = steering_vector_.vector.to(at::kDouble).norm().item<double>();
      results.concept_words = words_;
      results.seed = o_.seed;
      results.attributes = {{"provenance", provenance_json}, {"model", o_.model}, {"av", o_.av}, {"ar", o_.ar},
                            {"vector", o_.vector},           {"prompts_file", o_.prompts},
                            {"ar_target", autoencoder::ar_target_name(ar_meta_.ar_target)}};
      write_audit(results, fs::join(o_.out, "audit.h5"));
      write_audit_summary(results, fs::join(o_.out, "summary.csv"));
      summary = {static_cast<int64_t>(prompts_.size()), static_cast<int64_t>(results.samples.size()), median_norm_,
                 layer_};
      log_summary(results);
    });
    return summary;
  }

 private:
  void validate() const {
    NLA_CHECK_INPUT(!o_.model.empty(), "option 'model': expected a checkpoint directory");
    NLA_CHECK_INPUT(!o_.av.empty(), "option 'av': expected an AV checkpoint directory");
    NLA_CHECK_INPUT(!o_.ar.empty(), "option 'ar': expected an AR checkpoint directory");
    NLA_CHECK_INPUT(!o_.out.empty(), "option 'out': expected a run directory");
    NLA_CHECK_INPUT(o_.positions_per_prompt > 0, "option 'positions-per-prompt': expected > 0, got ",
                    o_.positions_per_prompt);
    NLA_CHECK_INPUT(o_.max_prompt_tokens > 0, "option 'max-prompt-tokens': expected > 0, got ", o_.max_prompt_tokens);
    NLA_CHECK_INPUT(o_.max_new_tokens > 0, "option 'max-new-tokens': expected > 0, got ", o_.max_new_tokens);
    NLA_CHECK_INPUT(o_.av_max_new_tokens > 0, "option 'av-max-new-tokens': expected > 0, got ", o_.av_max_new_tokens);
    NLA_CHECK_INPUT(std::isfinite(o_.temperature) && o_.temperature >= 0, "option 'temperature': expected >= 0, got ",
                    o_.temperature);
    NLA_CHECK_INPUT(std::isfinite(o_.av_temperature) && o_.av_temperature >= 0,
                    "option 'av-temperature': expected >= 0, got ", o_.av_temperature);
    NLA_CHECK_INPUT(o_.top_p > 0 && o_.top_p <= 1, "option 'top-p': expected in (0, 1], got ", o_.top_p);
    NLA_CHECK_INPUT(o_.seed >= 0, "option 'seed': expected >= 0, got ", o_.seed);
    NLA_CHECK_INPUT(o_.batch > 0, "option 'batch': expected > 0, got ", o_.batch);
  }

  std::vector<std::vector<int64_t>> tokens_of(const std::vector<int64_t>& chunk) const {
    std::vector<std::vector<int64_t>> tokens;
    for (int64_t i : chunk) tokens.push_back(prompts_[static_cast<size_t>(i)]);
    return tokens;
  }

  const at::Tensor& unit_of(const std::string& direction) const {
    return direction == kVectorDirection ? vector_unit_ : random_unit_;
  }

  std::vector<model::Steering> steering_for(const std::string& direction, double scale) const {
    if (scale == 0) return {};
    return {model::Steering{layer_, unit_of(direction).to(net_->device(), at::kFloat), scale * median_norm_, {}}};
  }

  // generate: each prompt continued with the steering on; seeds from (seed, prompt), the same
  // at every scale.
  std::vector<std::vector<int64_t>> generate(const std::vector<int64_t>& chunk,
                                             const std::vector<model::Steering>& steering,
                                             const std::string& direction, double scale) {
    std::vector<model::GenerationPrompt> prompts;
    for (int64_t i : chunk) prompts.push_back(model::GenerationPrompt{prompts_[static_cast<size_t>(i)], {}, {}});
    model::GenerationOptions options;
    options.max_new_tokens = o_.max_new_tokens;
    options.temperature = o_.temperature;
    options.top_p = o_.top_p;
    for (int64_t i : chunk) options.seeds.push_back(mix_seeds(static_cast<uint64_t>(o_.seed), static_cast<uint64_t>(i)));
    options.stop_token_ids = {autoencoder::kEndOfTextTokenId, autoencoder::kImEndTokenId};
    options.steering = steering;
    auto result = model::generate(*net_, prompts, options);
    std::vector<std::vector<int64_t>> continuations;
    for (size_t k = 0; k < chunk.size(); ++k) {
      auto tokens = result.tokens[k];
      if (result.finish_reasons[k] == "stop") tokens.pop_back();  // the stop token is not text
      continuations_.push_back({direction, scale, chunk[k], tokenizer_->decode(std::vector<tokenizer::TokenId>(tokens.begin(), tokens.end())),
                                static_cast<int64_t>(tokens.size())});
      if (scale == 0)  // the unsteered baseline is both directions' scale 0
        continuations_.push_back({kRandomDirection, 0.0, chunk[k], continuations_.back().text, continuations_.back().tokens});
      continuations.push_back(std::move(tokens));
    }
    return continuations;
  }

  // capture: one steered forward over prompt + continuation -> the layer's activations and
  // next-token distributions at K sampled continuation positions; the unsteered model on the
  // same tokens -> the KL (0 at scale 0, where both are the same model).
  std::vector<Captured> capture(const std::vector<int64_t>& chunk, const std::vector<std::vector<int64_t>>& continuations,
                                const std::vector<model::Steering>& steering, double scale) {
    std::vector<std::vector<int64_t>> sequences;
    std::vector<std::vector<int64_t>> positions;
    int64_t widest = 1;
    for (size_t k = 0; k < chunk.size(); ++k) {
      sequences.push_back(prompts_[static_cast<size_t>(chunk[k])]);
      const int64_t prompt_length = static_cast<int64_t>(sequences.back().size());
      sequences.back().insert(sequences.back().end(), continuations[k].begin(), continuations[k].end());
      positions.emplace_back();
      for (int64_t offset : sample_offsets(static_cast<int64_t>(continuations[k].size()), o_.positions_per_prompt,
                                           static_cast<uint64_t>(o_.seed), chunk[k]))
        positions.back().push_back(prompt_length + offset);
      widest = std::max<int64_t>(widest, static_cast<int64_t>(positions.back().size()));
    }
    std::vector<Captured> captured;
    // (B, K) positions, short rows padded with position 0 (ignored).
    at::Tensor index = at::zeros({static_cast<int64_t>(chunk.size()), widest}, at::kLong);
    for (size_t k = 0; k < chunk.size(); ++k)
      for (size_t j = 0; j < positions[k].size(); ++j) index[static_cast<int64_t>(k)][static_cast<int64_t>(j)] = positions[k][j];
    const model::ForwardInput input = right_padded(sequences, net_->device());
    model::ForwardOptions steered;
    steered.steering = steering;
    steered.capture_layers = {layer_};
    steered.logits_index = index.to(net_->device());
    auto out = net_->forward(input, steered);
    at::Tensor activations = out.captured.at(layer_).to(at::kCPU, at::kFloat);  // (B, T, C)
    at::Tensor kl = at::zeros({static_cast<int64_t>(chunk.size()), widest}, at::kDouble);  // (B, K)
    if (scale != 0) {
      model::ForwardOptions plain;
      plain.logits_index = steered.logits_index;
      at::Tensor log_p = at::log_softmax(out.logits.to(at::kDouble), -1);                               // (B, K, V)
      at::Tensor log_q = at::log_softmax(net_->forward(input, plain).logits.to(at::kDouble), -1);       // (B, K, V)
      kl = (log_p.exp() * (log_p - log_q)).sum(-1).to(at::kCPU);                                         // (B, K)
    }
    for (size_t k = 0; k < chunk.size(); ++k)
      for (size_t j = 0; j < positions[k].size(); ++j) {
        Captured c;
        c.prompt = chunk[k];
        c.slot = static_cast<int64_t>(j);
        c.position = positions[k][j];
        c.activation = activations[static_cast<int64_t>(k)][c.position].clone();
        c.kl = kl[static_cast<int64_t>(k)][static_cast<int64_t>(j)].item<double>();
        captured.push_back(std::move(c));
      }
    return captured;
  }

  // describe: the AV verbalizes each activation (seeds from (seed, prompt, slot), the same at
  // every scale), the AR reconstructs the successful explanations; score: cosines and
  // projections in the activation's scale, mentions.
  void describe_and_score(const std::vector<Captured>& captured, const std::string& direction, double scale) {
    if (captured.empty()) return;
    std::vector<at::Tensor> rows;
    std::vector<int64_t> ids;
    for (const auto& c : captured) {
      rows.push_back(c.activation);
      ids.push_back(c.prompt * o_.positions_per_prompt + c.slot);
    }
    autoencoder::VerbalizeOptions options;
    options.max_new_tokens = o_.av_max_new_tokens;
    options.temperature = o_.av_temperature;
    options.seed = static_cast<uint64_t>(o_.seed);
    options.batch = std::max<int64_t>(o_.batch, 1) * o_.positions_per_prompt;
    const auto verbalizations = verbalizer_->verbalize(at::stack(rows), ids, options);
    std::vector<std::string> explanations;
    for (const auto& v : verbalizations)
      if (!v.failed) explanations.push_back(v.explanation);
    at::Tensor reconstructions;  // (n_ok, d) float64, in the activation's scale as nla eval scores them
    if (!explanations.empty())
      reconstructions = eval::to_activation_scale(ar_->forward(ar_->make_batch(*ar_tokenizer_, explanations)).cpu(),
                                                  ar_meta_.ar_target, median_norm_);
    int64_t next_ok = 0;
    for (size_t i = 0; i < captured.size(); ++i) {
      const auto& c = captured[i];
      const auto& v = verbalizations[i];
      at::Tensor activation = c.activation.to(at::kDouble);
      AuditSample s;
      s.direction = direction;
      s.scale = scale;
      s.prompt = c.prompt;
      s.slot = c.slot;
      s.position = c.position;
      s.act_cos_v = cosine(activation, vector_unit_);
      s.act_proj_v = activation.dot(vector_unit_).item<double>();
      s.kl = c.kl;
      s.failed = v.failed;
      s.description = v.description;
      s.explanation = v.explanation;
      s.mentions = !v.failed && mentions_word(v.explanation, words_);
      s.cos_v = s.proj_v = s.cos_dir = std::nan("");
      at::Tensor y;
      if (!v.failed) {
        y = reconstructions[next_ok++];
        s.cos_v = cosine(y, vector_unit_);
        s.proj_v = y.dot(vector_unit_).item<double>();
        s.cos_dir = cosine(y, unit_of(direction));
      }
      samples_.push_back(s);
      if (scale == 0) {  // the baseline counted for the random direction too
        s.direction = kRandomDirection;
        s.cos_dir = v.failed ? std::nan("") : cosine(y, random_unit_);
        samples_.push_back(s);
      }
    }
  }

  void log_summary(const AuditResults& results) const {
    for (double scale : results.scales) {
      auto values = [&](const char* metric) { return audit_values(results, kVectorDirection, scale, metric); };
      auto mean = [](const std::vector<double>& v, double none) {
        return v.empty() ? none : std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
      };
      const size_t n = values("kl").size(), ok = values("cos_v").size();  // kl: every sample; cos_v: NaN when failed
      log_info("steer-audit: scale %g: cos(reconstruction, v) %.4f | mentions %.3f | KL %.4f nats | %zu samples "
               "(%zu failed)",
               scale, mean(values("cos_v"), std::nan("")), mean(values("mention_rate"), 0.0), mean(values("kl"), 0.0),
               n, n - ok);
    }
  }

  const SteerAuditOptions o_;
  const dist::Compute compute_;
  model::Qwen2Config config_;
  SteeringVector steering_vector_;
  autoencoder::NlaMeta av_meta_, ar_meta_;
  int layer_ = -1;
  std::vector<std::string> words_;
  std::vector<double> scales_;
  std::optional<tokenizer::Tokenizer> tokenizer_, av_tokenizer_, ar_tokenizer_;
  std::vector<std::string> prompt_texts_;
  std::vector<std::vector<int64_t>> prompts_;
  std::optional<model::Qwen2Model> net_, av_;
  std::optional<autoencoder::Reconstructor> ar_;
  std::optional<autoencoder::Verbalizer> verbalizer_;
  at::Tensor vector_unit_, random_unit_;  // (C) float64
  std::vector<std::vector<int64_t>> chunks_;
  double median_norm_ = 0;
  std::vector<AuditSample> samples_;
  std::vector<AuditContinuation> continuations_;
};

}  // namespace

SteerAuditSummary run_steer_audit(const SteerAuditOptions& options, const dist::Compute& compute,
                                  const std::string& provenance_json, const std::function<void()>& announce) {
  SteerAudit audit(options, compute);
  audit.setup();
  if (announce) announce();
  audit.measure_median_norm();
  audit.run_conditions();
  return audit.write(provenance_json);
}

}  // namespace nla::steer
