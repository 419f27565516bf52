// nla steer-vector: the contrastive mean difference of a layer's residuals, and the file.
#include "nla/steer/steering_vector.hpp"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <optional>

#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/core/log.hpp"
#include "nla/core/progress.hpp"
#include "nla/core/world.hpp"
#include "nla/dist/text_collectives.hpp"
#include "nla/io/safetensors.hpp"
#include "nla/model/qwen2.hpp"
#include "nla/steer/texts.hpp"
#include "nla/tokenizer/tokenizer.hpp"

namespace nla::steer {

namespace {

std::string format_double(double value) {
  char text[64];
  std::snprintf(text, sizeof text, "%.9g", value);
  return text;
}

void validate(const SteerVectorOptions& o) {
  NLA_CHECK_INPUT(!o.model.empty(), "option 'model': expected a checkpoint directory");
  NLA_CHECK_INPUT(o.token == "last" || o.token == "mean", "option 'token': expected last or mean, got '", o.token, "'");
  NLA_CHECK_INPUT(o.batch > 0, "option 'batch': expected > 0, got ", o.batch);
  NLA_CHECK_INPUT(o.max_tokens > 0, "option 'max-tokens': expected > 0, got ", o.max_tokens);
  NLA_CHECK_INPUT(o.min_position >= 0, "option 'min-position': expected >= 0, got ", o.min_position);
  NLA_CHECK_INPUT(!o.out.empty(), "option 'out': expected a .safetensors path");
}

// Per text, what rank 0 needs for the difference of the means: its index and its reduction
// (C), appended to one flat list per rank; and the norms of its typical tokens, for the median.
void append_text(std::vector<double>& reductions, std::vector<double>& norms, int64_t index,
                 const at::Tensor& residual, const std::string& token, int64_t min_position) {
  at::Tensor rows = residual.to(at::kDouble);                                          // (n, C)
  at::Tensor typical = typical_rows(rows, min_position);                               // (m, C)
  at::Tensor reduced = (token == "last" ? rows[rows.size(0) - 1] : typical.mean(0)).contiguous();  // (C)
  at::Tensor typical_norms = typical.norm(2, {1}).contiguous();                        // (m)
  reductions.push_back(static_cast<double>(index));
  reductions.insert(reductions.end(), reduced.data_ptr<double>(), reduced.data_ptr<double>() + reduced.numel());
  norms.insert(norms.end(), typical_norms.data_ptr<double>(), typical_norms.data_ptr<double>() + typical_norms.numel());
}

}  // namespace

SteerVectorSummary run_steer_vector(const SteerVectorOptions& o, const dist::Compute& compute,
                                    const std::string& provenance_json, const std::function<void()>& announce) {
  // ---- setup: every input checked on every rank before any output (one line when bad)
  std::optional<model::Qwen2Config> config;
  std::optional<tokenizer::Tokenizer> tok;
  std::optional<model::Qwen2Model> net;
  std::vector<std::vector<int64_t>> tokens;  // positives then negatives
  int64_t n_positive = 0, n_negative = 0;
  run_on_every_rank(MPI_COMM_WORLD, [&] {
    validate(o);
    config = model::Qwen2Config::from_file(o.model);
    NLA_CHECK_INPUT(o.layer >= 0 && o.layer < config->num_hidden_layers, "option 'layer': expected 0..",
                    config->num_hidden_layers - 1, " (", o.model, " has ", config->num_hidden_layers, " blocks), got ",
                    o.layer);
    tok.emplace(tokenizer::Tokenizer::from_file(o.tokenizer.empty() ? o.model : o.tokenizer));
    tokens = tokenize_texts(*tok, read_texts(o.positive, o.text_field, "positive", o.max_texts), o.max_tokens, "positive");
    n_positive = static_cast<int64_t>(tokens.size());
    auto negatives = tokenize_texts(*tok, read_texts(o.negative, o.text_field, "negative", o.max_texts), o.max_tokens, "negative");
    n_negative = static_cast<int64_t>(negatives.size());
    tokens.insert(tokens.end(), negatives.begin(), negatives.end());
    model::LoadOptions load;
    load.num_layers = o.layer + 1;  // later blocks are neither loaded nor run
    load.with_head = false;
    load.device = compute.device;
    load.dtype = compute.dtype;
    net.emplace(model::Qwen2Model::load(o.model, load));
  });
  run_on_root(MPI_COMM_WORLD, [&] {
    NLA_CHECK_INPUT(o.overwrite || !fs::exists(o.out), o.out, ": exists; pass --overwrite to replace it");
    const std::string parent = fs::parent(o.out);
    if (!parent.empty()) fs::create_directories(parent);
  });
  if (announce) announce();

  // ---- residuals: this rank's chunks
  const auto chunks = rank_chunks(static_cast<int64_t>(tokens.size()), o.batch, world_rank(), world_size());
  std::vector<double> reductions, norms;
  Progress progress("steer-vector", static_cast<int64_t>(chunks.size()), "batches");
  for (const auto& chunk : chunks) {
    std::vector<std::vector<int64_t>> batch;
    for (int64_t i : chunk) batch.push_back(tokens[static_cast<size_t>(i)]);
    const auto residuals = layer_residuals(*net, batch, o.layer);
    for (size_t k = 0; k < chunk.size(); ++k)
      append_text(reductions, norms, chunk[k], residuals[k], o.token, o.min_position);
    progress.advance();
  }
  progress.finish();

  // ---- rank 0: every text's reduction in text order, the difference of the two means
  const double median_norm = gathered_median(MPI_COMM_WORLD, norms);
  const auto parts = dist::gather_doubles(MPI_COMM_WORLD, reductions, 0);
  SteerVectorSummary summary;
  run_on_root(MPI_COMM_WORLD, [&] {
    const int64_t c = config->hidden_size;
    std::vector<std::vector<double>> reduced(tokens.size());
    for (const auto& part : parts)
      for (auto at = part.begin(); at != part.end(); at += 1 + c)  // index, then C values
        reduced[static_cast<size_t>(*at)].assign(at + 1, at + 1 + c);
    std::vector<double> positive_sum(static_cast<size_t>(c), 0.0), negative_sum(static_cast<size_t>(c), 0.0);
    for (size_t i = 0; i < reduced.size(); ++i) {
      auto& sum = static_cast<int64_t>(i) < n_positive ? positive_sum : negative_sum;
      for (int64_t j = 0; j < c; ++j) sum[static_cast<size_t>(j)] += reduced[i][static_cast<size_t>(j)];
    }
    std::vector<float> vector(static_cast<size_t>(c));
    double squared = 0;
    for (int64_t j = 0; j < c; ++j) {
      const double difference = positive_sum[static_cast<size_t>(j)] / static_cast<double>(n_positive) -
                                negative_sum[static_cast<size_t>(j)] / static_cast<double>(n_negative);
      vector[static_cast<size_t>(j)] = static_cast<float>(difference);
      squared += difference * difference;
    }
    summary = {n_positive, n_negative, std::sqrt(squared), median_norm};
    NLA_CHECK(std::isfinite(summary.norm), "steer-vector: the difference of the means is not finite");
    NLA_CHECK_INPUT(summary.norm > 0, o.positive, " and ", o.negative,
                    ": the two sets give the same mean activation (a zero vector)");
    std::map<std::string, std::string> metadata = {
        {"format", kSteeringVectorFormat},
        {"layer", std::to_string(o.layer)},
        {"model", o.model},
        {"token", o.token},
        {"min_position", std::to_string(o.min_position)},
        {"positive", o.positive},
        {"negative", o.negative},
        {"n_positive", std::to_string(n_positive)},
        {"n_negative", std::to_string(n_negative)},
        {"norm", format_double(summary.norm)},
        {"median_norm", format_double(summary.median_norm)},
        {"relative_norm", format_double(summary.norm / summary.median_norm)},
        {"provenance", provenance_json}};
    io::TensorBytes bytes{"vector", io::DType::F32, {c}, vector.data(), vector.size() * sizeof(float)};
    io::write_safetensors(o.out, {bytes}, metadata);
    log_info("steer-vector: layer %lld, %lld positive - %lld negative texts (%s token): |v| %.4g = %.3g x the "
             "layer's median norm %.4g -> %s",
             static_cast<long long>(o.layer), static_cast<long long>(n_positive), static_cast<long long>(n_negative),
             o.token.c_str(), summary.norm, summary.norm / summary.median_norm, summary.median_norm, o.out.c_str());
  });
  return summary;
}

int64_t SteeringVector::layer() const {
  auto found = metadata.find("layer");
  if (found == metadata.end()) return -1;
  try {
    return std::stoll(found->second);
  } catch (const std::exception&) {
    return -1;
  }
}

SteeringVector read_steering_vector(const std::string& path, int64_t hidden_size, const std::string& option) {
  NLA_CHECK_INPUT(!path.empty(), "option '", option, "': expected a steering vector (.safetensors)");
  NLA_CHECK_INPUT(fs::exists(path), path, ": cannot be read (option '", option, "')");
  io::SafetensorsFile file(path);  // InputError naming the file when it is not safetensors
  const io::TensorInfo* info = file.find("vector");
  if (!info && file.tensors().size() == 1) info = &file.tensors().front();
  NLA_CHECK_INPUT(info, path, ": expected a tensor 'vector' of ", hidden_size, " elements (option '", option, "')");
  NLA_CHECK_INPUT(info->shape.size() == 1 && info->shape[0] == hidden_size, path, ": tensor '", info->name,
                  "' has shape [", info->shape.empty() ? std::string() : std::to_string(info->shape[0]),
                  info->shape.size() > 1 ? ", ..." : "", "], expected [", hidden_size,
                  "] (the model's hidden size; option '", option, "')");
  const std::string tensor = path + ": tensor '" + info->name + "'";
  at::Tensor vector = at::empty({hidden_size}, model::float_scalar_type(info->dtype, tensor));
  std::memcpy(vector.data_ptr(), file.data(*info), info->num_bytes());
  model::check_finite_weights(vector, path, info->name);
  vector = vector.to(at::kFloat);
  NLA_CHECK_INPUT(vector.norm().item<double>() > 0, path, ": tensor '", info->name, "' is zero (option '", option,
                  "')");
  return {vector, file.header().metadata};
}

}  // namespace nla::steer
