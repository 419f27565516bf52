// The evaluation sweep (see include/nla/eval/sweep.hpp). Read top to bottom: inputs and
// validation -> rows and tasks -> this rank's tasks (AV generation, AR) -> gather each layer
// to the rank that scores it (layer i on rank i % size) -> metrics and PCA there -> scored
// layers to rank 0 -> CLC, summary.csv and results.h5 on rank 0.
#include "nla/eval/sweep.hpp"

#include <c10/core/GradMode.h>  // c10::NoGradGuard (LibTorch 2.x has no at:: alias here)
#include <ATen/ATen.h>
#include <mpi.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <optional>
#include <set>

#include "nla/core/atomic_file.hpp"
#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/core/seeding.hpp"
#include "nla/core/log.hpp"
#include "nla/core/progress.hpp"
#include "nla/core/world.hpp"
#include "nla/dist/device.hpp"
#include "nla/dist/text_collectives.hpp"
#include "nla/eval/metrics.hpp"
#include "nla/model/layer_list.hpp"
#include "nla/autoencoder/checkpoint.hpp"
#include "nla/autoencoder/reconstructor.hpp"
#include "nla/autoencoder/verbalizer.hpp"
#include "nla/store/activation_store.hpp"
#include "nla/store/activation_tensor.hpp"
#include "nla/store/hdf5_util.hpp"
#include "nla/tokenizer/tokenizer.hpp"

namespace nla::eval {

namespace {

using store::H5Handle;

// ---- seeds -------------------------------------------------------------------------


// Stream purposes, so that no two draws share a generator.
constexpr uint64_t kRowsStream = 0x524f5753, kRandomStream = 0x52414e44, kShuffleStream = 0x53485546,
                   kVerbalizeStream = 0x56455242, kPoolStream = 0x504f4f4c;

class SplitMix {
 public:
  explicit SplitMix(uint64_t seed) : state_(seed) {}
  uint64_t next() { return state_ = splitmix64(state_); }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  uint64_t below(uint64_t bound) { return next() % bound; }

 private:
  uint64_t state_;
};

// The evaluated rows: a seeded sample of min(count, n) store rows, sorted.
std::vector<int64_t> choose_rows(int64_t n_samples, int64_t count, uint64_t seed) {
  std::vector<int64_t> all(static_cast<size_t>(n_samples));
  std::iota(all.begin(), all.end(), 0);
  SplitMix rng(mix_seeds(seed, kRowsStream));
  for (int64_t i = 0; i < count; ++i) {  // partial Fisher-Yates
    int64_t j = i + static_cast<int64_t>(rng.below(static_cast<uint64_t>(n_samples - i)));
    std::swap(all[static_cast<size_t>(i)], all[static_cast<size_t>(j)]);
  }
  all.resize(static_cast<size_t>(count));
  std::sort(all.begin(), all.end());
  return all;
}

// The recall candidates: the evaluated rows (in their order), then, when they are fewer than
// `pool`, a seeded sample of the store's other rows (sorted) up to `pool` rows if the store
// has them. A distractor never needs a reconstruction, so any row of the layer can be one.
std::vector<int64_t> choose_pool_rows(const std::vector<int64_t>& rows, int64_t n_store, int64_t pool, uint64_t seed) {
  std::vector<int64_t> out = rows;
  const int64_t wanted = std::min(pool, n_store) - static_cast<int64_t>(rows.size());
  if (wanted <= 0) return out;
  std::vector<int64_t> others;
  std::set<int64_t> evaluated(rows.begin(), rows.end());
  for (int64_t row = 0; row < n_store; ++row)
    if (!evaluated.count(row)) others.push_back(row);
  SplitMix rng(mix_seeds(seed, kPoolStream));
  for (int64_t i = 0; i < wanted; ++i) {  // partial Fisher-Yates
    int64_t j = i + static_cast<int64_t>(rng.below(static_cast<uint64_t>(static_cast<int64_t>(others.size()) - i)));
    std::swap(others[static_cast<size_t>(i)], others[static_cast<size_t>(j)]);
  }
  others.resize(static_cast<size_t>(wanted));
  std::sort(others.begin(), others.end());
  out.insert(out.end(), others.begin(), others.end());
  return out;
}

// g_i: d standard normals (Box-Muller) from a generator seeded by (seed, layer, row).
at::Tensor gaussian_vectors(const std::vector<int64_t>& rows, int layer, int64_t d, uint64_t seed) {
  auto out = at::empty({static_cast<int64_t>(rows.size()), d}, at::kFloat);  // (b, d)
  float* data = out.data_ptr<float>();
  for (size_t i = 0; i < rows.size(); ++i) {
    SplitMix rng(mix_seeds(mix_seeds(mix_seeds(seed, kRandomStream), static_cast<uint64_t>(layer)), static_cast<uint64_t>(rows[i])));
    for (int64_t k = 0; k < d; k += 2) {
      double u1 = 1.0 - rng.uniform(), u2 = rng.uniform();  // u1 in (0, 1]: log is finite
      double radius = std::sqrt(-2.0 * std::log(u1));
      data[static_cast<int64_t>(i) * d + k] = static_cast<float>(radius * std::cos(2 * M_PI * u2));
      if (k + 1 < d) data[static_cast<int64_t>(i) * d + k + 1] = static_cast<float>(radius * std::sin(2 * M_PI * u2));
    }
  }
  return out;
}

// pi for `shuffled`: a uniformly random cyclic permutation (Sattolo), so pi(i) != i: every
// sample is scored with another text's description.
std::vector<int64_t> cyclic_permutation(int64_t n, int layer, uint64_t seed) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), 0);
  SplitMix rng(mix_seeds(mix_seeds(seed, kShuffleStream), static_cast<uint64_t>(layer)));
  for (int64_t i = n - 1; i > 0; --i) std::swap(p[static_cast<size_t>(i)], p[rng.below(static_cast<uint64_t>(i))]);
  return p;
}

// ---- gathering -------------------------------------------------------------------------

// Raw tensor bytes in a fixed order, for moving a layer's data between ranks exactly.
class ByteWriter {
 public:
  void tensor(const at::Tensor& t) {
    auto c = t.contiguous();
    bytes_.append(static_cast<const char*>(c.data_ptr()), static_cast<size_t>(c.numel()) * c.element_size());
  }
  std::string& bytes() { return bytes_; }

 private:
  std::string bytes_;
};

class ByteReader {
 public:
  ByteReader(const std::string& bytes, size_t offset) : bytes_(bytes), offset_(offset) {}
  at::Tensor tensor(at::IntArrayRef sizes, at::ScalarType type) {
    auto out = at::empty(sizes, type);
    const size_t count = static_cast<size_t>(out.numel()) * out.element_size();
    NLA_CHECK(offset_ + count <= bytes_.size(), "layer message too short: ", bytes_.size(), " bytes");
    std::memcpy(out.data_ptr(), bytes_.data() + offset_, count);
    offset_ += count;
    return out;
  }
  size_t offset() const { return offset_; }

 private:
  const std::string& bytes_;
  size_t offset_;
};

// One task's output: a block of samples of one layer.
struct BlockResult {
  int64_t first = 0;                                          // index into the evaluated rows
  std::map<std::string, at::Tensor> reconstructions;          // av, random -> (b, d) float32
  std::map<std::string, std::vector<std::string>> descriptions;
  std::map<std::string, std::vector<uint8_t>> failed;
};

// One layer's generated outputs, every sample, on the rank that scores the layer.
struct LayerOutputs {
  std::map<std::string, at::Tensor> reconstructions;              // av, random -> (n, d) float32
  std::map<std::string, std::vector<std::string>> descriptions;  // av, random -> n
  std::map<std::string, std::vector<uint8_t>> failed;            // av, random -> n
};

// The blocks of one layer from every rank, assembled on `root` (bytes: a JSON header then
// the float32 rows of each block and condition). Collective; other ranks get {}.
// `into` (on root, optional): (n, d) tensors per generated condition to fill instead of new ones.
LayerOutputs gather_layer(const std::vector<BlockResult>& mine, int64_t n, int64_t d, int root,
                          const std::map<std::string, at::Tensor>& into = {}) {
  nlohmann::json header = nlohmann::json::array();
  std::string floats;
  for (const auto& block : mine) {
    nlohmann::json entry{{"first", block.first}};
    for (const auto& condition : kGeneratedConditions) {
      entry["descriptions"][condition] = block.descriptions.at(condition);
      entry["failed"][condition] = block.failed.at(condition);
      auto rows = block.reconstructions.at(condition).contiguous();  // (b, d)
      floats.append(static_cast<const char*>(rows.data_ptr()), static_cast<size_t>(rows.numel()) * sizeof(float));
    }
    header.push_back(entry);
  }
  std::string text = header.dump();
  std::string message = std::to_string(text.size()) + "\n" + text + floats;
  auto parts = dist::gather_text(MPI_COMM_WORLD, message, root);
  LayerOutputs layer;
  if (world_rank() != root) return layer;
  for (const auto& condition : kGeneratedConditions) {
    layer.reconstructions[condition] = into.count(condition) ? into.at(condition) : at::zeros({n, d}, at::kFloat);
    layer.descriptions[condition].assign(static_cast<size_t>(n), "");
    layer.failed[condition].assign(static_cast<size_t>(n), 0);
  }
  for (const auto& part : parts) {
    size_t newline = part.find('\n');
    size_t json_size = std::stoull(part.substr(0, newline));
    auto blocks = nlohmann::json::parse(part.substr(newline + 1, json_size));
    const char* cursor = part.data() + newline + 1 + json_size;
    for (const auto& entry : blocks) {
      const int64_t first = entry["first"].get<int64_t>();
      for (const auto& condition : kGeneratedConditions) {
        auto texts = entry["descriptions"][condition].get<std::vector<std::string>>();
        auto flags = entry["failed"][condition].get<std::vector<uint8_t>>();
        const int64_t b = static_cast<int64_t>(texts.size());
        for (int64_t i = 0; i < b; ++i) {
          layer.descriptions[condition][static_cast<size_t>(first + i)] = texts[static_cast<size_t>(i)];
          layer.failed[condition][static_cast<size_t>(first + i)] = flags[static_cast<size_t>(i)];
        }
        auto target = layer.reconstructions[condition].narrow(0, first, b);  // (b, d)
        std::memcpy(target.data_ptr(), cursor, static_cast<size_t>(b * d) * sizeof(float));
        cursor += b * d * static_cast<int64_t>(sizeof(float));
      }
    }
  }
  return layer;
}

// ---- metrics, on the rank that owns the layer ------------------------------------------

// recall@10 in blocks of samples: recall_at_k materialises (rows, P, d) candidates.
// pool: (M, d) candidate rows, distractors index into it.
at::Tensor chunked_recall(const at::Tensor& truth, const at::Tensor& prediction, const at::Tensor& pool,
                          const at::Tensor& distractors) {
  const int64_t n = truth.size(0), per_sample = std::max<int64_t>(distractors.size(1), 1), d = truth.size(1);
  const int64_t chunk = std::max<int64_t>(1, (int64_t{256} << 20) / (per_sample * d * 8));  // ~256 MB of float64
  std::vector<at::Tensor> parts;
  for (int64_t first = 0; first < n; first += chunk) {
    int64_t count = std::min(chunk, n - first);
    parts.push_back(recall_at_k(truth.narrow(0, first, count), prediction.narrow(0, first, count), pool,
                                distractors.narrow(0, first, count), 10));
  }
  return at::cat(parts);  // (n) float64
}

PcaData pca_of(const at::Tensor& truth, const at::Tensor& reconstruction) {
  auto x = truth.to(at::kDouble);
  auto mu = x.mean(0);                                               // (d)
  auto centered = x - mu;                                            // (n, d)
  auto svd = at::linalg_svd(centered, /*full_matrices=*/false);
  auto singular = std::get<1>(svd);                                  // (min(n, d))
  auto components = std::get<2>(svd).narrow(0, 0, 2).clone();      // (2, d)
  // Sign convention: each component's largest entry positive (SVD signs are arbitrary).
  for (int64_t c = 0; c < 2; ++c) {
    auto row = components[c];
    if (row[row.abs().argmax()].item<double>() < 0) row.mul_(-1);
  }
  PcaData pca;
  pca.truth = at::matmul(centered, components.t()).to(at::kFloat);                                   // (n, 2)
  pca.reconstruction = at::matmul(reconstruction.to(at::kDouble) - mu, components.t()).to(at::kFloat);  // (n, 2)
  auto variance = singular.pow(2);
  double total = variance.sum().item<double>();
  for (int64_t c = 0; c < 2; ++c)
    pca.explained_variance[c] = total > 0 && c < variance.size(0) ? variance[c].item<double>() / total : 0.0;
  return pca;
}

// The mean condition's prediction for each row: the mean of the layer's other evaluated rows,
// (n mu - x_i) / (n - 1). The plain mean mu contains x_i itself: with n = 200 rows of
// near-orthogonal activations that share of the answer lifted its cosine by ~0.04 (demo,
// layer 2: 0.119 in-sample, 0.078 leave-one-out, 0.067 the training rows' mean). A single
// row has no others: mu, i.e. itself, which no comparison uses.
at::Tensor leave_one_out_means(const at::Tensor& truth, const at::Tensor& mean) {
  const int64_t n = truth.size(0);
  if (n < 2) return mean.unsqueeze(0).expand({n, -1});
  return (mean.unsqueeze(0) * static_cast<double>(n) - truth) / static_cast<double>(n - 1);  // (n, d)
}

// What scoring one layer gives (on the layer's rank, then sent to rank 0).
struct LayerScores {
  std::map<std::string, std::map<std::string, at::Tensor>> metrics;  // condition -> metric -> (n) float64
  at::Tensor permutation;  // (n) int64: shuffled's pi
  at::Tensor mean;         // (d) float32: the mean condition's prediction
  at::Tensor var_nrm;      // (1) float64
  // per condition (kConditions order) the layer's fve, then the median norm and the scale
  // the reconstructions were mapped to (NaN: a raw AR's, kept as they are)
  at::Tensor layer_figures;  // (|kConditions| + 2) float64
  std::optional<PcaData> pca;
};

// Every condition's metrics of one layer, and its PCA data when asked. First the AR's outputs
// go to the activation's scale (outputs.reconstructions are replaced by what is scored, in
// float32, so that the stored reconstructions reproduce every metric exactly). The operations
// and tensor shapes do not depend on which rank runs them, so the numbers do not either.
LayerScores score_layer(int layer, LayerOutputs& outputs, const at::Tensor& truth_f32, const at::Tensor& pool_f32,
                        double var_nrm_value, double anchor_median_norm, autoencoder::ArTarget target,
                        const at::Tensor& distractors, uint64_t seed, bool with_pca) {
  const int64_t n = truth_f32.size(0);
  auto truth = truth_f32.to(at::kDouble);                             // (n, d)
  auto pool = pool_f32.to(at::kDouble);                               // (M, d)
  auto mean = truth.mean(0);                                          // (d)
  const double layer_median_norm = median_norm(truth);
  for (const auto& condition : kGeneratedConditions) {
    auto& reconstruction = outputs.reconstructions.at(condition);
    reconstruction = to_activation_scale(reconstruction, target, layer_median_norm).to(at::kFloat);  // (n, d)
  }
  auto av = outputs.reconstructions.at("av").to(at::kDouble);        // (n, d)
  auto pi = at::tensor(cyclic_permutation(n, layer, seed), at::kLong);  // (n)
  LayerScores scores;
  scores.permutation = pi;
  scores.mean = mean.to(at::kFloat);
  scores.var_nrm = at::full({1}, var_nrm_value, at::kDouble);

  // av_normed: the truth rescaled per sample to the anchor layer's median norm, and so is a
  // direction-predicting AR's output (a raw AR's is in the anchor layer's scale already).
  auto norms = truth.norm(2, {1}, /*keepdim=*/true);                  // (n, 1)
  auto truth_normed = truth * (anchor_median_norm / at::where(norms > 0, norms, at::ones_like(norms)));
  auto av_normed = to_activation_scale(av, target, anchor_median_norm);  // (n, d)
  struct Scored {
    const at::Tensor truth, mean, prediction;
  };
  std::map<std::string, Scored> conditions = {
      {"av", {truth, mean, av}},
      {"random", {truth, mean, outputs.reconstructions.at("random").to(at::kDouble)}},
      {"shuffled", {truth, mean, av.index_select(0, pi)}},
      {"mean", {truth, mean, leave_one_out_means(truth, mean)}},
      {"av_normed", {truth_normed, truth_normed.mean(0), av_normed}},
  };
  std::vector<double> figures;
  for (const auto& name : kConditions) {
    const auto& c = conditions.at(name);
    auto m = sample_metrics(c.truth, c.prediction, c.mean);
    auto& out = scores.metrics[name];
    out["cosine"] = m.cosine;
    out["fve_sample"] = m.fve_sample;
    out["nrmse"] = m.nrmse;
    out["mse_nrm"] = m.mse_nrm;
    out["fve_nrm"] = 1.0 - m.mse_nrm / var_nrm_value;
    out["recall10"] = chunked_recall(c.truth, c.prediction.contiguous(), pool, distractors);
    figures.push_back(layer_fve(c.truth, c.prediction));
  }
  figures.push_back(layer_median_norm);
  figures.push_back(target == autoencoder::ArTarget::raw ? std::nan("") : layer_median_norm);
  scores.layer_figures = at::tensor(figures, at::kDouble);
  if (with_pca) scores.pca = pca_of(truth, av);
  return scores;
}

// A scored layer as bytes for rank 0: a JSON header (descriptions, failed flags, whether
// PCA data follows) then raw tensors in a fixed order.
std::string pack_layer(const LayerOutputs& outputs, const LayerScores& scores) {
  nlohmann::json header = {{"descriptions", outputs.descriptions}, {"failed", outputs.failed},
                           {"pca", scores.pca.has_value()}};
  ByteWriter data;
  for (const auto& condition : kGeneratedConditions) data.tensor(outputs.reconstructions.at(condition));
  for (const auto& condition : kConditions)
    for (const auto& metric : kMetrics) data.tensor(scores.metrics.at(condition).at(metric));
  data.tensor(scores.permutation);
  data.tensor(scores.mean);
  data.tensor(scores.var_nrm);
  data.tensor(scores.layer_figures);
  if (scores.pca) {
    data.tensor(scores.pca->truth);
    data.tensor(scores.pca->reconstruction);
    data.tensor(at::tensor(std::vector<double>{scores.pca->explained_variance[0], scores.pca->explained_variance[1]},
                           at::kDouble));
  }
  std::string text = header.dump();
  return std::to_string(text.size()) + "\n" + text + data.bytes();
}

void unpack_layer(const std::string& message, int64_t n, int64_t d, LayerOutputs& outputs, LayerScores& scores) {
  const size_t newline = message.find('\n');
  const size_t json_size = std::stoull(message.substr(0, newline));
  auto header = nlohmann::json::parse(message.substr(newline + 1, json_size));
  ByteReader data(message, newline + 1 + json_size);
  for (const auto& condition : kGeneratedConditions) {
    outputs.descriptions[condition] = header["descriptions"][condition].get<std::vector<std::string>>();
    outputs.failed[condition] = header["failed"][condition].get<std::vector<uint8_t>>();
    outputs.reconstructions[condition] = data.tensor({n, d}, at::kFloat);
  }
  for (const auto& condition : kConditions)
    for (const auto& metric : kMetrics) scores.metrics[condition][metric] = data.tensor({n}, at::kDouble);
  scores.permutation = data.tensor({n}, at::kLong);
  scores.mean = data.tensor({d}, at::kFloat);
  scores.var_nrm = data.tensor({1}, at::kDouble);
  scores.layer_figures = data.tensor({static_cast<int64_t>(kConditions.size()) + 2}, at::kDouble);
  if (header["pca"].get<bool>()) {
    PcaData pca;
    pca.truth = data.tensor({n, 2}, at::kFloat);
    pca.reconstruction = data.tensor({n, 2}, at::kFloat);
    auto variance = data.tensor({2}, at::kDouble);
    pca.explained_variance[0] = variance[0].item<double>();
    pca.explained_variance[1] = variance[1].item<double>();
    scores.pca = pca;
  }
  NLA_CHECK(data.offset() == message.size(), "layer message: ", message.size() - data.offset(), " bytes left over");
}

// Rank 0 stores a scored layer into the results.
void store_layer(SweepResults& results, int64_t layer_index, const LayerOutputs& outputs, const LayerScores& scores) {
  const int64_t n = static_cast<int64_t>(results.rows.size());
  for (const auto& condition : kGeneratedConditions) {
    results.reconstructions[condition][layer_index].copy_(outputs.reconstructions.at(condition));
    results.failed[condition][layer_index].copy_(at::tensor(outputs.failed.at(condition), at::kByte));
    const auto& texts = outputs.descriptions.at(condition);
    std::copy(texts.begin(), texts.end(), results.descriptions[condition].begin() + layer_index * n);
  }
  for (const auto& condition : kConditions)
    for (const auto& metric : kMetrics)
      results.metrics[condition][metric][layer_index].copy_(scores.metrics.at(condition).at(metric));
  results.permutation[layer_index].copy_(scores.permutation);
  results.means[layer_index].copy_(scores.mean);
  results.var_nrm[layer_index].copy_(scores.var_nrm[0]);
  for (size_t c = 0; c < kConditions.size(); ++c)
    results.layer_metrics[kConditions[c]]["fve"][layer_index].copy_(scores.layer_figures[static_cast<int64_t>(c)]);
  const int64_t figures = static_cast<int64_t>(kConditions.size());
  results.median_norm[layer_index].copy_(scores.layer_figures[figures]);
  results.reconstruction_scale[layer_index].copy_(scores.layer_figures[figures + 1]);
  if (scores.pca) results.pca[results.layers[static_cast<size_t>(layer_index)]] = *scores.pca;
}

}  // namespace

// ---- the sweep -------------------------------------------------------------------------

// ---- the sweep's state and phases ----------------------------------------------------------

namespace {

// Everything the phases share, built by setup_sweep().
struct SweepRun {
  const SweepOptions& o;
  std::string created_by;
  std::optional<store::ActivationStore> acts;
  autoencoder::NlaMeta ar_meta, av_meta;
  model::LoadOptions load;
  std::optional<autoencoder::Reconstructor> ar;
  std::optional<model::Qwen2Model> av;
  std::optional<tokenizer::Tokenizer> tok;
  int anchor = -1;
  int64_t d = 0;
  std::vector<int> layers, pca_layers;  // decided on rank 0
  int64_t n_layers = 0;
  std::string var_nrm_source;
  int64_t n = 0;  // evaluated rows
  std::vector<int64_t> rows, pool_rows;
  autoencoder::ArTarget ar_target = autoencoder::ArTarget::normalized;
  std::vector<std::string> oracle;  // --av-descriptions: the AV's answers read from the store
  int rank = 0, size = 1;
  int64_t blocks_per_layer = 0;
  double anchor_median_norm = 0;
  int64_t recall_pool = 0;

  explicit SweepRun(const SweepOptions& options) : o(options) {}
  // Layer i is scored by rank i % size (its owner).
  int owner(int64_t layer_index) const { return static_cast<int>(layer_index % size); }
};

// Options and readable inputs, validated on rank 0 (one line, exit 2 on every rank on failure).
void validate_options(const SweepOptions& o) {
  run_on_root(MPI_COMM_WORLD, [&] {
    NLA_CHECK_INPUT(!o.av.empty() && !o.ar.empty() && !o.store.empty(),
                    "options 'av', 'ar' and 'store': expected an AV checkpoint, an AR checkpoint and a store");
    NLA_CHECK_INPUT(!o.out.empty(), "option 'out': expected a run directory");
    dist::resolve_precision(o.precision, dist::device_kind(o.device));  // the kind only: each rank picks its GPU below
    NLA_CHECK_INPUT(o.samples >= 2, "option 'samples': expected >= 2, got ", o.samples);
    NLA_CHECK_INPUT(o.batch > 0, "option 'batch': expected > 0, got ", o.batch);
    NLA_CHECK_INPUT(o.pool >= 2, "option 'pool': expected >= 2, got ", o.pool);
    NLA_CHECK_INPUT(o.max_new_tokens > 0, "option 'max-new-tokens': expected > 0, got ", o.max_new_tokens);
    NLA_CHECK_INPUT(o.var_nrm_source == "auto" || o.var_nrm_source == "meta" || o.var_nrm_source == "layer",
                    "option 'var-nrm-source': expected auto, meta or layer, got '", o.var_nrm_source, "'");
    NLA_CHECK_INPUT(o.overwrite || !fs::exists(o.out + "/results.h5"), o.out,
                    "/results.h5: exists already (option 'overwrite' replaces it)");
    // Readable inputs, checked once here so that a bad one is one line, not one per rank.
    store::ActivationStore probe(o.store);
    auto ar_probe = autoencoder::NlaMeta::read(o.ar), av_probe = autoencoder::NlaMeta::read(o.av);
    NLA_CHECK_INPUT(ar_probe.role == "ar", o.ar, "/nla_meta.yaml: key 'role': expected ar, got '", ar_probe.role, "'");
    NLA_CHECK_INPUT(av_probe.role == "av", o.av, "/nla_meta.yaml: key 'role': expected av, got '", av_probe.role, "'");
  });
}

// The models, the layers (rank 0 decides, every rank receives), the evaluated rows.
std::unique_ptr<SweepRun> setup_sweep(const SweepOptions& o, const std::string& created_by,
                                      const std::function<void()>& announce) {
  validate_options(o);
  auto run_owner = std::make_unique<SweepRun>(o);
  SweepRun& run = *run_owner;
  run.created_by = created_by;
  run.acts.emplace(o.store);
  auto& acts = *run.acts;
  auto& ar_meta = run.ar_meta;
  auto& load = run.load;
  load.device = dist::resolve_device(o.device);  // collective: every rank is here
  load.dtype = dist::resolve_precision(o.precision, load.device.type());  // AV and AR; reconstructions are fp32
  run.ar.emplace(autoencoder::load_ar(o.ar, load, &ar_meta));
  run.av.emplace(autoencoder::load_av(o.av, load, &run.av_meta));
  auto& ar = *run.ar;
  auto& av = *run.av;
  const std::string tokenizer_source =
      fs::exists(o.av + "/tokenizer.json") || o.model.empty() ? o.av : o.model;
  run.tok.emplace(tokenizer::Tokenizer::from_file(tokenizer_source));
  const int anchor = run.anchor = static_cast<int>(ar.layer());
  const int64_t d = run.d = ar.d_model();
  auto& layers = run.layers;
  auto& pca_layers = run.pca_layers;
  auto& var_nrm_source = run.var_nrm_source;
  var_nrm_source = o.var_nrm_source == "auto" ? (ar_meta.var_nrm ? "meta" : "layer") : o.var_nrm_source;
  run_on_root(MPI_COMM_WORLD, [&] {
    const std::vector<int>& stored = acts.layers();
    layers = o.layers == "all" ? stored : model::parse_layer_list(o.layers, av.config().num_hidden_layers, "layers");
    for (int layer : layers)
      NLA_CHECK_INPUT(acts.has_layer(layer), o.store, ": layer ", layer, " is not in the store (option 'layers')");
    NLA_CHECK_INPUT(acts.has_layer(anchor), o.store, ": the AR's anchor layer ", anchor,
                    " is not in the store (av_normed needs its median norm)");
    NLA_CHECK_INPUT(acts.hidden_size() == d && av.config().hidden_size == d, o.store, ": hidden_size ",
                    acts.hidden_size(), ", the AR's d_model ", d, ", the AV's ", av.config().hidden_size,
                    ": expected all equal");
    NLA_CHECK_INPUT(var_nrm_source != "meta" || ar_meta.var_nrm, o.ar,
                    "/nla_meta.yaml: field 'extraction.var_nrm' absent (option 'var-nrm-source meta' needs it)");
    NLA_CHECK_INPUT(o.av_descriptions.empty() || acts.has_descriptions(o.av_descriptions), o.store,
                    ": /descriptions/", o.av_descriptions, " is absent (option 'av-descriptions')");
    NLA_CHECK_INPUT(acts.n_samples() >= 2, o.store, ": expected at least 2 samples");
    if (!o.pca_layers.empty()) {
      auto requested = o.pca_layers == "all" ? layers
                                             : model::parse_layer_list(o.pca_layers, av.config().num_hidden_layers,
                                                                         "pca-layers");
      for (int layer : requested)
        if (std::find(layers.begin(), layers.end(), layer) != layers.end()) pca_layers.push_back(layer);
    }
  });
  // Rank 0 decided the layers; every rank needs them.
  layers = dist::broadcast_ints(MPI_COMM_WORLD, std::move(layers));
  run.n_layers = static_cast<int64_t>(layers.size());
  if (announce) announce();

  run.n = std::min(o.samples, acts.n_samples());
  run.rows = choose_rows(acts.n_samples(), run.n, static_cast<uint64_t>(o.seed));
  run.pool_rows = choose_pool_rows(run.rows, acts.n_samples(), o.pool, static_cast<uint64_t>(o.seed));
  run.ar_target = ar_meta.ar_target;
  if (!o.av_descriptions.empty()) run.oracle = acts.read_descriptions(o.av_descriptions);
  run.blocks_per_layer = (run.n + o.batch - 1) / o.batch;
  run.rank = world_rank();
  run.size = world_size();
  log_info("eval: %lld layers x %lld samples, anchor layer %d, %d rank(s); conditions av, random (generated), "
           "shuffled, av_normed (av's reconstructions reused), mean",
           static_cast<long long>(run.n_layers), static_cast<long long>(run.n), anchor, run.size);
  return run_owner;
}

// This rank's tasks, (layer, block) task t on rank t % size: the AV's descriptions of the
// block's activations (av) and of Gaussian vectors (random), and the AR's reconstructions.
std::vector<std::vector<BlockResult>> generate_and_reconstruct(SweepRun& run) {
  const SweepOptions& o = run.o;
  auto& acts = *run.acts;
  auto& ar = *run.ar;
  auto& tok = *run.tok;
  const auto& av_meta = run.av_meta;
  const auto& ar_meta = run.ar_meta;
  const auto& layers = run.layers;
  const auto& rows = run.rows;
  const auto& oracle = run.oracle;
  const int64_t n = run.n, d = run.d, n_layers = run.n_layers, blocks_per_layer = run.blocks_per_layer;
  const int rank = run.rank, size = run.size;
  int64_t my_samples = 0;
  for (int64_t t = rank; t < n_layers * blocks_per_layer; t += size)
    my_samples += std::min(o.batch, n - (t % blocks_per_layer) * o.batch);
  autoencoder::Verbalizer verbalizer(*run.av, tok, av_meta.injection_scale ? av_meta.injection_scale : ar_meta.injection_scale,
                                     av_meta.actor_template.empty() ? autoencoder::kActorTemplate : av_meta.actor_template,
                                     ar.critic_template());  // the AR that reads the answers sizes their inputs
  std::vector<std::vector<BlockResult>> mine(static_cast<size_t>(n_layers));
  {
    c10::NoGradGuard no_grad;
    Progress progress("eval (rank 0's tasks)", my_samples, "samples");
    for (int64_t t = rank; t < n_layers * blocks_per_layer; t += size) {
      const int64_t layer_index = t / blocks_per_layer, first = (t % blocks_per_layer) * o.batch;
      const int layer = layers[static_cast<size_t>(layer_index)];
      const int64_t b = std::min(o.batch, n - first);
      std::vector<int64_t> block_rows(rows.begin() + first, rows.begin() + first + b);
      auto truth = store::read_rows_tensor(acts, layer, block_rows);  // (b, d)
      BlockResult block;
      block.first = first;
      for (const auto& condition : kGeneratedConditions) {
        std::vector<std::string> texts, descriptions;
        std::vector<uint8_t> failed;
        if (condition == "av" && !oracle.empty()) {
          for (int64_t row : block_rows) {
            const auto& text = oracle[static_cast<size_t>(row)];
            const auto parsed = autoencoder::parse_answer(text);
            texts.push_back(autoencoder::explanation_text(text));  // the AR reads the bare explanation
            descriptions.push_back(parsed ? parsed->answer : std::string());
            failed.push_back(!parsed);
          }
        } else {
          autoencoder::VerbalizeOptions vo;
          vo.max_new_tokens = o.max_new_tokens;
          vo.temperature = o.temperature;
          vo.top_p = o.top_p;
          vo.batch = b;
          vo.seed = mix_seeds(mix_seeds(static_cast<uint64_t>(o.seed), kVerbalizeStream + (condition == "random")),
                        static_cast<uint64_t>(layer));
          auto inputs = condition == "av" ? truth : gaussian_vectors(block_rows, layer, d, static_cast<uint64_t>(o.seed));
          for (auto& v : verbalizer.verbalize(inputs, block_rows, vo)) {
            // A failed answer is still what the AV wrote: the AR reads its explanation when it
            // has a closed tag (a truncated answer), else the raw text.
            texts.push_back(v.failed ? autoencoder::explanation_text(v.text) : v.explanation);
            descriptions.push_back(v.failed ? v.text : v.description);
            failed.push_back(v.failed);
          }
        }
        block.reconstructions[condition] = ar.forward(ar.make_batch(tok, texts, o.max_tokens)).cpu().to(at::kFloat);
        block.descriptions[condition] = std::move(descriptions);
        block.failed[condition] = std::move(failed);
        progress.advance(condition == "av" ? 0 : b);
      }
      mine[static_cast<size_t>(layer_index)].push_back(std::move(block));
    }
    progress.finish();
  }

  return mine;
}

// results.h5's arrays on rank 0, before the layers arrive.
SweepResults allocate_results(const SweepRun& run) {
  const int64_t n = run.n, d = run.d, n_layers = run.n_layers;
  SweepResults results;
  results.layers = run.layers;
  results.anchor_layer = run.anchor;
  results.rows = run.rows;
  if (is_root()) {
    for (const auto& condition : kGeneratedConditions) {
      results.reconstructions[condition] = at::zeros({n_layers, n, d}, at::kFloat);
      results.descriptions[condition].assign(static_cast<size_t>(n_layers * n), "");
      results.failed[condition] = at::zeros({n_layers, n}, at::kByte);
    }
    for (const auto& condition : kConditions) {
      for (const auto& metric : kMetrics)
        results.metrics[condition][metric] = at::full({n_layers, n}, std::nan(""), at::kDouble);
      for (const auto& metric : kLayerMetrics)
        results.layer_metrics[condition][metric] = at::full({n_layers}, std::nan(""), at::kDouble);
    }
    results.median_norm = at::zeros({n_layers}, at::kDouble);
    results.reconstruction_scale = at::zeros({n_layers}, at::kDouble);
    results.permutation = at::zeros({n_layers, n}, at::kLong);
    results.means = at::zeros({n_layers, d}, at::kFloat);
    results.var_nrm = at::zeros({n_layers}, at::kDouble);
  }
  return results;
}

// Each layer's blocks gathered to its owner; rank 0's own layers go straight into `results`.
std::map<int64_t, LayerOutputs> gather_layers(const SweepRun& run, std::vector<std::vector<BlockResult>>& mine,
                                              SweepResults& results) {
  const int64_t n = run.n, d = run.d, n_layers = run.n_layers;
  const int rank = run.rank;
  auto owner = [&](int64_t layer_index) { return run.owner(layer_index); };
  std::map<int64_t, LayerOutputs> owned;  // layer index -> gathered outputs, on the owner
  for (int64_t li = 0; li < n_layers; ++li) {
    std::map<std::string, at::Tensor> into;  // rank 0's own layers go straight into the results
    if (is_root() && owner(li) == 0)
      for (const auto& condition : kGeneratedConditions) into[condition] = results.reconstructions[condition][li];
    auto layer = gather_layer(mine[static_cast<size_t>(li)], n, d, owner(li), into);
    if (owner(li) == rank) owned[li] = std::move(layer);
  }
  mine.clear();

  return owned;
}

// What every owner needs besides its layers: the anchor layer's median norm (av_normed's
// target, rank 0 reads it), the recall pool and the PCA layers (decided on rank 0).
void share_scoring_inputs(SweepRun& run) {
  auto& acts = *run.acts;
  const auto& rows = run.rows;
  const int64_t n = run.n, n_layers = run.n_layers;
  const int anchor = run.anchor, size = run.size;
  auto& pca_layers = run.pca_layers;
  const auto ar_target = run.ar_target;
  double anchor_median_norm = 0;
  run_on_root(MPI_COMM_WORLD, [&] {
    auto anchor_truth = store::read_rows_tensor(acts, anchor, rows).to(at::kDouble);  // (n, d)
    anchor_median_norm = median_of([&] {
      auto norms = anchor_truth.norm(2, {1}).contiguous();
      return std::vector<double>(norms.data_ptr<double>(), norms.data_ptr<double>() + n);
    }());
  });
  anchor_median_norm = dist::broadcast_double(MPI_COMM_WORLD, anchor_median_norm);
  pca_layers = dist::broadcast_ints(MPI_COMM_WORLD, std::move(pca_layers));
  const int64_t recall_pool = run.recall_pool = std::min(run.o.pool, static_cast<int64_t>(run.pool_rows.size()));
  log_info("eval: scoring %lld layers on %d rank(s) (layer i on rank i %% %d) | AR target %s: %s | recall@10 among %lld "
           "candidates",
           static_cast<long long>(n_layers), size, size, autoencoder::ar_target_name(ar_target),
           ar_target == autoencoder::ArTarget::raw ? "reconstructions used as they are"
                                                   : "reconstructions mapped to each layer's median activation norm",
           static_cast<long long>(recall_pool));

  run.anchor_median_norm = anchor_median_norm;
}

// Every condition's metrics and the PCA of the layers this rank owns.
std::map<int64_t, LayerScores> score_owned_layers(const SweepRun& run, std::map<int64_t, LayerOutputs>& owned) {
  const SweepOptions& o = run.o;
  auto& acts = *run.acts;
  const auto& layers = run.layers;
  const auto& pca_layers = run.pca_layers;
  const auto& pool_rows = run.pool_rows;
  const auto& ar_meta = run.ar_meta;
  const auto& var_nrm_source = run.var_nrm_source;
  const int64_t n = run.n, recall_pool = run.recall_pool;
  const double anchor_median_norm = run.anchor_median_norm;
  const auto ar_target = run.ar_target;
  std::map<int64_t, LayerScores> scored;
  if (!owned.empty()) {
    // The same distractor draw at every layer and condition (indices into the layer's rows).
    auto distractors = draw_distractors(0, n, static_cast<int64_t>(pool_rows.size()), recall_pool - 1,
                                        static_cast<uint64_t>(o.seed));  // (n, P): indices into pool_rows
    for (auto& [li, outputs] : owned) {
      const int layer = layers[static_cast<size_t>(li)];
      auto pool = store::read_rows_tensor(acts, layer, pool_rows);  // (M, d): the evaluated rows first
      auto truth = pool.narrow(0, 0, n);                            // (n, d)
      double var_nrm_value = var_nrm_source == "meta" ? *ar_meta.var_nrm : var_nrm(truth);
      bool with_pca = std::find(pca_layers.begin(), pca_layers.end(), layer) != pca_layers.end();
      scored[li] = score_layer(layer, outputs, truth, pool, var_nrm_value, anchor_median_norm, ar_target, distractors,
                               static_cast<uint64_t>(o.seed), with_pca);
    }
  }

  return scored;
}

// Rank 0 collects the scored layers (its own directly, the others' as bytes).
void collect_scored_layers(const SweepRun& run, std::map<int64_t, LayerOutputs>& owned,
                           std::map<int64_t, LayerScores>& scored, SweepResults& results) {
  const int64_t n = run.n, d = run.d, n_layers = run.n_layers;
  const int rank = run.rank;
  auto owner = [&](int64_t layer_index) { return run.owner(layer_index); };
  for (int64_t li = 0; li < n_layers; ++li) {
    if (owner(li) == 0) {
      if (is_root()) store_layer(results, li, owned.at(li), scored.at(li));
      owned.erase(li);
      scored.erase(li);
      continue;
    }
    auto parts = dist::gather_text(MPI_COMM_WORLD, owner(li) == rank ? pack_layer(owned.at(li), scored.at(li)) : std::string(), 0);
    owned.erase(li);
    scored.erase(li);
    if (!is_root()) continue;
    LayerOutputs outputs;
    LayerScores scores;
    unpack_layer(parts[static_cast<size_t>(owner(li))], n, d, outputs, scores);
    store_layer(results, li, outputs, scores);
  }

}

// Rank 0: the CLC, the provenance, summary.csv and results.h5 (last: its presence marks a
// complete run).
void write_outputs(const SweepRun& run, SweepResults& results) {
  const SweepOptions& o = run.o;
  auto& acts = *run.acts;
  const auto& rows = run.rows;
  const auto& pool_rows = run.pool_rows;
  const auto& var_nrm_source = run.var_nrm_source;
  const auto& load = run.load;
  const auto& created_by = run.created_by;
  const auto ar_target = run.ar_target;
  const double anchor_median_norm = run.anchor_median_norm;
  const int64_t recall_pool = run.recall_pool;
  run_on_root(MPI_COMM_WORLD, [&] {
    for (int64_t row : rows) {
      results.documents.push_back(acts.sample_document(row));
      results.positions.push_back(acts.sample_position(row));
    }
    results.var_nrm_source = var_nrm_source;
    results.anchor_median_norm = anchor_median_norm;
    results.recall_pool = recall_pool;
    results.pool_rows = pool_rows;
    results.ar_target = autoencoder::ar_target_name(ar_target);
    results.clc = clc_matrix(results.reconstructions["av"]);
    results.attributes = {{"created_by", created_by},
                          {"av", o.av},
                          {"ar", o.ar},
                          {"model", o.model},
                          {"store", o.store},
                          {"var_nrm_source", var_nrm_source},
                          {"seed", std::to_string(o.seed)},
                          {"samples", std::to_string(o.samples)},
                          {"pool", std::to_string(o.pool)},
                          {"max_new_tokens", std::to_string(o.max_new_tokens)},
                          {"temperature", std::to_string(o.temperature)},
                          {"av_descriptions", o.av_descriptions},
                          {"ar_target", results.ar_target},
                          {"mean_condition", "leave_one_out"},
                          {"device", load.device.str()},
                          {"precision", load.dtype == at::kBFloat16 ? "bf16" : "fp32"}};
    fs::create_directories(o.out);
    write_summary_csv(results, o.out + "/summary.csv");
    write_results(results, o.out + "/results.h5");  // last: its presence marks a complete run
    log_info("eval: wrote %s/results.h5 and summary.csv", o.out.c_str());
  });
}

}  // namespace

void run_sweep(const SweepOptions& o, const std::string& created_by, const std::function<void()>& announce) {
  auto run = setup_sweep(o, created_by, announce);
  // generate: this rank's (layer, block) tasks, AV descriptions and AR reconstructions
  auto mine = generate_and_reconstruct(*run);
  // gather: each layer's blocks to the rank that scores it (layer i on rank i % size)
  SweepResults results;  // filled on rank 0
  if (is_root()) results = allocate_results(*run);
  auto owned = gather_layers(*run, mine, results);
  mine.clear();
  // score: metrics and PCA on each layer's owner. A layer is scored by the same operations
  // on the same tensor shapes whichever rank owns it, so results.h5 does not depend on the
  // rank count.
  share_scoring_inputs(*run);
  auto scored = score_owned_layers(*run, owned);
  // collect and write: the scored layers to rank 0, then the CLC and the files
  collect_scored_layers(*run, owned, scored, results);
  write_outputs(*run, results);
}

}  // namespace nla::eval
