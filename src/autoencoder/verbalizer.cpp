// The AV at inference: injection into the prompt, KV-cache generation, answer parsing.
#include "nla/autoencoder/verbalizer.hpp"

#include <ATen/ATen.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "nla/core/error.hpp"
#include "nla/dist/text_collectives.hpp"
#include "nla/core/seeding.hpp"
#include "nla/core/progress.hpp"
#include "nla/model/generate.hpp"

namespace nla::autoencoder {

namespace {

std::string strip(const std::string& text) {
  const char* space = " \t\r\n";
  const size_t begin = text.find_first_not_of(space);
  if (begin == std::string::npos) return "";
  return text.substr(begin, text.find_last_not_of(space) - begin + 1);
}

}  // namespace

std::optional<ParsedAnswer> parse_answer(const std::string& text) {
  const std::string open = "<explanation>", close = "</explanation>";
  const size_t begin = text.find(open);
  if (begin == std::string::npos) return std::nullopt;
  const size_t end = text.find(close, begin + open.size());
  if (end == std::string::npos) return std::nullopt;
  return ParsedAnswer{text.substr(begin, end + close.size() - begin),
                      strip(text.substr(begin + open.size(), end - begin - open.size()))};
}

std::string explanation_text(const std::string& description) {
  auto parsed = parse_answer(description);
  return parsed ? parsed->explanation : strip(description);
}

std::string failure_of(const std::optional<ParsedAnswer>& parsed, bool stopped, const tokenizer::Tokenizer& tokenizer,
                       const std::string& critic_template) {
  if (!parsed) return kFailNoClosedTag;
  if (!stopped) return kFailTruncated;
  const auto ids = ar_input_ids(tokenizer, parsed->explanation, critic_template);
  if (static_cast<int64_t>(ids.size()) > kMaxArInputTokens) return kFailArInputTooLong;
  return "";
}

std::vector<int64_t> answer_ids(const tokenizer::Tokenizer& tokenizer, const std::string& description) {
  auto ids = tokenizer.encode(description);
  std::vector<int64_t> out(ids.begin(), ids.end());
  out.push_back(kImEndTokenId);
  return out;
}

Verbalizer::Verbalizer(const model::Qwen2Model& model, const tokenizer::Tokenizer& tokenizer, double injection_scale,
                       const std::string& actor_template, const std::string& critic_template)
    : model_(model), tokenizer_(tokenizer), injection_scale_(injection_scale), critic_template_(critic_template) {
  NLA_CHECK_INPUT(model.has_head(), "the AV needs the full model with its LM head");
  NLA_CHECK_INPUT(injection_scale > 0, "injection_scale: expected > 0, got ", injection_scale);
  prompt_ = av_prompt(tokenizer, actor_template);
}

std::vector<Verbalization> Verbalizer::verbalize(const at::Tensor& activations, const std::vector<int64_t>& sample_ids,
                                                 const VerbalizeOptions& options) const {
  NLA_CHECK(activations.dim() == 2 && activations.size(0) == static_cast<int64_t>(sample_ids.size()),
            "verbalize: activations (N, d) and N sample ids expected");
  NLA_CHECK_INPUT(activations.size(1) == model_.config().hidden_size, "verbalize: activations have width ",
                  activations.size(1), ", the AV's hidden_size is ", model_.config().hidden_size);
  NLA_CHECK_INPUT(options.samples_per_activation > 0 && options.batch > 0 && options.max_new_tokens > 0,
                  "verbalize: samples per activation, batch and max new tokens must be > 0");
  NLA_CHECK_INPUT(options.temperature >= 0, "verbalize: temperature: expected >= 0, got ", options.temperature);
  NLA_CHECK_INPUT(options.top_p > 0 && options.top_p <= 1, "verbalize: top_p: expected in (0, 1], got ",
                  options.top_p);
  const int64_t n = activations.size(0), k = options.samples_per_activation;
  if (n == 0) return {};
  // A zero or non-finite activation has no direction: h * s / |h| would inject NaNs.
  {
    at::Tensor norms = activations.to(at::kFloat).norm(2, {1}).cpu();  // (N)
    auto norm = norms.accessor<float, 1>();
    for (int64_t i = 0; i < n; ++i)
      NLA_CHECK_INPUT(std::isfinite(norm[i]) && norm[i] > 0, "verbalize: activation of sample ",
                      sample_ids[static_cast<size_t>(i)], " has norm ", norm[i], "; expected a finite norm > 0");
  }
  // (N, d) in the model's dtype on its device: the injected embeddings.
  at::Tensor vectors = injection_vectors(activations, injection_scale_).to(model_.device(), model_.dtype());
  std::vector<int64_t> prompt_ids(prompt_.ids.begin(), prompt_.ids.end());

  // Every (activation, sample) pair in one generate call: `batch` rows decode at once and a
  // finished row takes the next waiting prompt (continuous batching).
  std::vector<Verbalization> out(static_cast<size_t>(n * k));
  std::vector<model::GenerationPrompt> prompts(static_cast<size_t>(n * k));
  model::GenerationOptions gen;
  gen.max_new_tokens = options.max_new_tokens;
  gen.max_batch = options.batch;
  gen.temperature = options.temperature;
  gen.top_p = options.top_p;
  gen.stop_token_ids = {kImEndTokenId, kEndOfTextTokenId};
  gen.pad_token_id = kImEndTokenId;
  for (int64_t flat = 0; flat < n * k; ++flat) {
    const int64_t i = flat / k, j = flat % k;
    auto& prompt = prompts[static_cast<size_t>(flat)];
    prompt.ids = prompt_ids;
    prompt.injections.emplace_back(prompt_.marker_position, vectors[i]);
    gen.seeds.push_back(splitmix64(splitmix64(options.seed ^ splitmix64(static_cast<uint64_t>(sample_ids[i]))) +
                                   static_cast<uint64_t>(j)));
    auto& v = out[static_cast<size_t>(flat)];
    v.sample_id = sample_ids[i];
    v.sample_index = j;
  }
  auto result = model::generate(model_, prompts, gen);
  for (int64_t flat = 0; flat < n * k; ++flat) {
    auto& v = out[static_cast<size_t>(flat)];
    v.tokens = result.tokens[static_cast<size_t>(flat)];
    std::vector<tokenizer::TokenId> text_ids;
    for (int64_t id : v.tokens)
      if (id != kImEndTokenId && id != kEndOfTextTokenId) text_ids.push_back(static_cast<tokenizer::TokenId>(id));
    v.text = tokenizer_.decode(text_ids);
    const bool stopped = !v.tokens.empty() && (v.tokens.back() == kImEndTokenId || v.tokens.back() == kEndOfTextTokenId);
    const auto parsed = parse_answer(v.text);
    v.failure = failure_of(parsed, stopped, tokenizer_, critic_template_);
    v.failed = !v.failure.empty();
    if (!v.failed) {
      v.description = parsed->answer;
      v.explanation = parsed->explanation;
    }
  }
  return out;
}

namespace {

nlohmann::json to_json(const Verbalization& v) {
  return {{"id", v.sample_id},
          {"j", v.sample_index},
          {"tokens", v.tokens},
          {"text", v.text},
          {"description", v.description},
          {"explanation", v.explanation},
          {"failed", v.failed},
          {"failure", v.failure}};
}

Verbalization from_json(const nlohmann::json& record) {
  Verbalization v;
  v.sample_id = record.at("id").get<int64_t>();
  v.sample_index = record.at("j").get<int64_t>();
  v.tokens = record.at("tokens").get<std::vector<int64_t>>();
  v.text = record.at("text").get<std::string>();
  v.description = record.at("description").get<std::string>();
  v.explanation = record.at("explanation").get<std::string>();
  v.failed = record.at("failed").get<bool>();
  v.failure = record.at("failure").get<std::string>();
  return v;
}

}  // namespace

int av_store_layer(const NlaMeta& meta, const std::string& av_dir, const store::ActivationStore& acts, int layer) {
  NLA_CHECK_INPUT(meta.role == "av", av_dir, "/nla_meta.yaml: key 'role': expected av, got '", meta.role, "'");
  if (layer < 0) {
    NLA_CHECK_INPUT(meta.extraction_layer_index >= 0, "option 'layer': not given, and ", av_dir,
                    "/nla_meta.yaml has no critic.extraction_layer_index; expected --layer L");
    layer = static_cast<int>(meta.extraction_layer_index);
  }
  if (!acts.has_layer(layer)) {
    std::string layers;
    for (int l : acts.layers()) layers += (layers.empty() ? "" : ",") + std::to_string(l);
    NLA_INPUT_ERROR(acts.path(), ": no layer ", layer, " (the store has layers ", layers, "); option 'layer'");
  }
  NLA_CHECK_INPUT(acts.hidden_size() == meta.d_model, acts.path(), ": activations have width ", acts.hidden_size(),
                  ", but the AV ", av_dir, "/nla_meta.yaml has d_model ", meta.d_model);
  return layer;
}

std::vector<Verbalization> verbalize_store_rows(const Verbalizer& verbalizer, const store::ActivationStore& acts,
                                                int layer, const std::vector<int64_t>& rows,
                                                const VerbalizeOptions& options, MPI_Comm comm,
                                                const std::string& progress_label) {
  int rank = 0, size = 1;
  NLA_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  NLA_CHECK_MPI(MPI_Comm_size(comm, &size));
  NLA_CHECK_INPUT(acts.has_layer(layer), acts.path(), ": no layer ", layer, " in the store");
  for (int64_t row : rows)
    NLA_CHECK_INPUT(row >= 0 && row < acts.n_samples(), acts.path(), ": row ", row, " outside 0..",
                    acts.n_samples() - 1);
  // Rank r: rows [r * n / size, (r + 1) * n / size).
  const int64_t n = static_cast<int64_t>(rows.size()), d = acts.hidden_size();
  const int64_t begin = n * rank / size, end = n * (rank + 1) / size;
  // Several batches per call: continuous batching refills finished rows from the same call.
  const int64_t chunk = std::max<int64_t>(1, options.batch) * kRowsPerBatchRead;
  std::vector<Verbalization> mine;
  int64_t failed = 0;
  {
    Progress progress(progress_label, end - begin, "rows");
    for (int64_t first = begin; first < end; first += chunk) {
      const int64_t count = std::min(chunk, end - first);
      std::vector<int64_t> ids(rows.begin() + first, rows.begin() + first + count);
      std::vector<float> values = acts.read_rows(layer, ids);  // count x d
      at::Tensor h = at::from_blob(values.data(), {count, d}, at::kFloat);  // (count, d), borrowed
      auto part = verbalizer.verbalize(h, ids, options);
      for (const auto& v : part) failed += v.failed ? 1 : 0;
      mine.insert(mine.end(), std::make_move_iterator(part.begin()), std::make_move_iterator(part.end()));
      progress.advance(count, std::to_string(failed) + " failed samples");
    }
    progress.finish();
  }
  if (size == 1) return mine;

  // Gather to rank 0 in rank order (= row order): each rank's block as one JSON text.
  nlohmann::json block = nlohmann::json::array();
  for (const auto& v : mine) block.push_back(to_json(v));
  auto parts = dist::gather_text(comm, block.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), 0);
  if (rank != 0) return {};
  std::vector<Verbalization> out;
  out.reserve(static_cast<size_t>(n * options.samples_per_activation));
  for (const auto& part : parts)
    for (const auto& record : nlohmann::json::parse(part)) out.push_back(from_json(record));
  return out;
}

}  // namespace nla::autoencoder
