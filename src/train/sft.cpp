// AR and AV SFT over the ranks of the job (see sft.hpp): the inputs checked and read
// (SftData), the document split, the row order and the learning-rate schedule. The loop is
// sft_loop.cpp; the tasks are train_ar.cpp and train_av.cpp.
#include "nla/train/sft.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "nla/autoencoder/losses.hpp"
#include "nla/core/error.hpp"
#include "nla/core/seeding.hpp"
#include "nla/core/stop_signal.hpp"  // defines: signal_from_name
#include "nla/core/world.hpp"
#include "nla/dist/device.hpp"  // defines: device_kind, resolve_precision
#include "nla/model/qwen2_config.hpp"
#include "nla/store/activation_tensor.hpp"  // defines: read_rows_tensor
#include "nla/tokenizer/tokenizer.hpp"
#include "sft_internal.hpp"

namespace nla::train {

namespace {

SftData load_data(const SftOptions& o, const char* command) {
  NLA_CHECK_INPUT(!o.store.empty(), "option 'store': expected an activation store");
  NLA_CHECK_INPUT(!o.model.empty(), "option 'model': expected a base checkpoint directory");
  NLA_CHECK_INPUT(!o.out.empty(), "option 'out': expected a run directory");
  NLA_CHECK_INPUT(o.steps > 0 && o.batch > 0 && o.micro_batch >= 0, "options 'steps', 'batch': expected > 0, "
                  "'micro-batch': expected >= 0");
  NLA_CHECK_INPUT(o.lr_max > 0 && o.lr_min >= 0 && o.lr_min <= o.lr_max,
                  "options 'lr-max', 'lr-min': expected 0 <= lr-min <= lr-max, lr-max > 0");
  NLA_CHECK_INPUT(o.lr_warmup_steps >= 0, "option 'lr-warmup-steps': expected >= 0");
  NLA_CHECK_INPUT(o.max_tokens > 0, "option 'max-tokens': expected > 0");
  SftData data;
  data.acts = std::make_unique<store::ActivationStore>(o.store);
  const auto& acts = *data.acts;
  NLA_CHECK_INPUT(o.layer >= 0 && acts.has_layer(static_cast<int>(o.layer)), o.store, ": layer ", o.layer,
                  " is not in the store (option 'layer')");
  data.layer = static_cast<int>(o.layer);
  NLA_CHECK_INPUT(acts.has_descriptions(o.descriptions), o.store, ": /descriptions/", o.descriptions,
                  " missing (run nla label first, or set option 'descriptions')");
  data.descriptions = acts.read_descriptions(o.descriptions);
  NLA_CHECK_INPUT(static_cast<int64_t>(data.descriptions.size()) == acts.n_samples(), o.store, ": /descriptions/",
                  o.descriptions, ": expected ", acts.n_samples(), " entries, got ", data.descriptions.size());

  // Rows without a description (an av: labeler's failed samples) are not trained on.
  std::vector<int64_t> row_documents(static_cast<size_t>(acts.n_samples()));
  for (int64_t row = 0; row < acts.n_samples(); ++row) row_documents[static_cast<size_t>(row)] = acts.sample_document(row);
  auto split = split_by_document(row_documents, o.validation_fraction, o.seed);
  auto described = [&](std::vector<int64_t>& rows) {
    rows.erase(std::remove_if(rows.begin(), rows.end(),
                              [&](int64_t row) { return data.descriptions[static_cast<size_t>(row)].empty(); }),
               rows.end());
  };
  described(split.train);
  described(split.validation);
  NLA_CHECK_INPUT(split.train.size() >= 2 && !split.validation.empty(), o.store, ": ", acts.n_samples(),
                  " samples give ", split.train.size(), " described training and ", split.validation.size(),
                  " validation rows; expected both non-empty (", command, ")");
  data.split = std::move(split);
  data.eval_rows = data.split.validation;
  if (static_cast<int64_t>(data.eval_rows.size()) > o.max_eval_samples)
    data.eval_rows.resize(static_cast<size_t>(std::max<int64_t>(1, o.max_eval_samples)));

  // Statistics of the normalised training activations (at most 8192 rows).
  std::vector<int64_t> stat_rows = data.split.train;
  if (stat_rows.size() > 8192) {
    std::mt19937_64 rng(static_cast<uint64_t>(o.seed));
    std::shuffle(stat_rows.begin(), stat_rows.end(), rng);
    stat_rows.resize(8192);
  }
  auto stat_acts = store::read_rows_tensor(acts, data.layer, stat_rows);  // (S, d)
  data.var_nrm = autoencoder::var_nrm(stat_acts);
  data.var_raw = autoencoder::var_raw(stat_acts);
  NLA_CHECK_INPUT(data.var_raw > 0 && std::isfinite(data.var_raw), o.store, ": layer ", data.layer,
                  ": the training rows' variance is ", data.var_raw, "; expected finite and > 0");
  data.mean_direction = autoencoder::normalise_rows(stat_acts).mean(0, /*keepdim=*/true);  // (1, d)
  data.mean_row = stat_acts.to(at::kFloat).mean(0, /*keepdim=*/true);                       // (1, d)
  data.injection_scale = o.injection_scale;
  if (data.injection_scale <= 0) {  // a round number a little above the mean norm, as the authors chose 150
    const double mean_norm = stat_acts.norm(2, {1}).mean().item<double>();
    const double unit = std::pow(10.0, std::floor(std::log10(mean_norm)) - 1);
    data.injection_scale = std::ceil(mean_norm / unit) * unit;
  }
  return data;
}

}  // namespace

std::string tokenizer_dir(const SftOptions& o) { return o.tokenizer.empty() ? o.model : o.tokenizer; }

// The AV's loss aggregation: true for the sequence mean (the authors'), false for the token mean.
bool sequence_mean_aggregation(const std::string& name) {
  if (name == "sequence") return true;
  NLA_CHECK_INPUT(name == "token", "option 'loss-aggregation': expected sequence or token, got '", name, "'");
  return false;
}

// Rank 0 checks the inputs (a problem is raised on every rank as one message), then the
// other ranks read the same, already validated, data; rank 0 keeps what it read.
SftInputs check_sft_inputs(const SftOptions& o, const char* command) {
  auto data = std::make_shared<SftData>();
  run_on_root(MPI_COMM_WORLD, [&] {
    *data = load_data(o, command);
    dist::resolve_precision(o.precision, dist::device_kind(o.device));  // the kind only: no GPU chosen here
    sequence_mean_aggregation(o.loss_aggregation);
    autoencoder::parse_ar_target(o.ar_target, "option 'ar-target'");
    signal_from_name(o.kill_signal, "kill-signal");
    auto config = model::Qwen2Config::from_file(o.model);
    NLA_CHECK_INPUT(config.hidden_size == data->acts->hidden_size(), o.store, ": hidden_size ",
                    data->acts->hidden_size(), " differs from the model's ", config.hidden_size, " (", o.model,
                    "/config.json)");
    NLA_CHECK_INPUT(o.layer < config.num_hidden_layers, "option 'layer': ", o.layer, " but ", o.model, " has ",
                    config.num_hidden_layers, " layers");
    tokenizer::Tokenizer::from_file(tokenizer_dir(o));
  });
  if (!is_root()) *data = load_data(o, command);
  return {std::move(data), command};
}

const SftData& checked_data(const SftInputs& inputs, const char* command) {
  NLA_CHECK(inputs.data && inputs.command == command, command, ": expected the inputs of check_sft_inputs(options, \"",
            command, "\"), got those of '", inputs.command, "'");
  return *inputs.data;
}

RowSplit split_by_document(const std::vector<int64_t>& row_documents, double validation_fraction, int64_t seed) {
  NLA_CHECK_INPUT(validation_fraction > 0 && validation_fraction < 1,
                  "option 'validation-fraction': expected in (0, 1), got ", validation_fraction);
  RowSplit split;
  auto threshold = static_cast<uint64_t>(validation_fraction * 1e6);
  for (size_t row = 0; row < row_documents.size(); ++row) {
    uint64_t h = splitmix64(static_cast<uint64_t>(row_documents[row]) ^ splitmix64(static_cast<uint64_t>(seed)));
    (h % 1000000 < threshold ? split.validation : split.train).push_back(static_cast<int64_t>(row));
  }
  return split;
}

double lr_at(int64_t step, int64_t steps, double lr_max, double lr_min, int64_t lr_warmup_steps) {
  if (step < lr_warmup_steps) return lr_max * static_cast<double>(step + 1) / static_cast<double>(lr_warmup_steps);
  int64_t decay_steps = std::max<int64_t>(1, steps - lr_warmup_steps - 1);
  double progress = std::min(1.0, static_cast<double>(step - lr_warmup_steps) / static_cast<double>(decay_steps));
  return lr_min + 0.5 * (lr_max - lr_min) * (1.0 + std::cos(M_PI * progress));
}

std::vector<int64_t> step_rows(const std::vector<int64_t>& train, int64_t batch, int64_t step, int64_t seed) {
  NLA_CHECK(!train.empty() && batch > 0 && step >= 0, "step_rows: bad arguments");
  const int64_t n = static_cast<int64_t>(train.size());
  std::vector<int64_t> rows;
  rows.reserve(static_cast<size_t>(batch));
  int64_t epoch = -1;
  std::vector<int64_t> order;
  for (int64_t i = step * batch; i < (step + 1) * batch; ++i) {
    if (i / n != epoch) {
      epoch = i / n;
      order = train;
      std::mt19937_64 rng(splitmix64(static_cast<uint64_t>(seed) * 0x100000001B3ull + static_cast<uint64_t>(epoch)));
      std::shuffle(order.begin(), order.end(), rng);
    }
    rows.push_back(order[static_cast<size_t>(i % n)]);
  }
  return rows;
}

}  // namespace nla::train
