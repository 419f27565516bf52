// AR and AV SFT over the ranks of the job (see sft.hpp): one loop, two tasks.
#include "nla/train/sft.hpp"

#include <ATen/ATen.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <sstream>

#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/core/seeding.hpp"
#include "nla/core/log.hpp"
#include "nla/core/progress.hpp"
#include "nla/core/stop_signal.hpp"       // defines: StopSignals, StoppedBySignal
#include "nla/core/world.hpp"
#include "nla/dist/adamw.hpp"
#include "nla/dist/communicator.hpp"
#include "nla/dist/device.hpp"            // defines: device_kind, resolve_device, resolve_precision
#include "nla/nla/checkpoint.hpp"
#include "nla/nla/losses.hpp"
#include "nla/nla/prompts.hpp"
#include "nla/nla/reconstructor.hpp"
#include "nla/nla/verbalizer.hpp"
#include "nla/store/activation_store.hpp"
#include "nla/store/activation_tensor.hpp"  // defines: read_rows_tensor
#include "nla/tokenizer/tokenizer.hpp"
#include "nla/train/metrics_file.hpp"       // defines: truncate_metrics
#include "nla/train/sharded_nla.hpp"
#include "nla/train/trainer_state.hpp"

namespace nla::train {

namespace {

// This rank's contiguous part of `rows` (sizes differ by at most one).
std::vector<int64_t> share_of(const std::vector<int64_t>& rows, int rank, int size) {
  const size_t n = rows.size(), base = n / size, extra = n % size;
  const size_t begin = rank * base + std::min<size_t>(rank, extra);
  const size_t count = base + (static_cast<size_t>(rank) < extra ? 1 : 0);
  return {rows.begin() + static_cast<int64_t>(begin), rows.begin() + static_cast<int64_t>(begin + count)};
}

// Part m of n near-equal parts of `rows`.
std::vector<int64_t> part_of(const std::vector<int64_t>& rows, int64_t m, int64_t n) {
  return share_of(rows, static_cast<int>(m), static_cast<int>(n));
}

}  // namespace

// The store, its descriptions and the split, validated (check_sft_inputs: rank 0 checks and
// every rank raises the same error).
struct SftData {
  std::unique_ptr<store::ActivationStore> acts;
  std::vector<std::string> descriptions;
  RowSplit split;
  std::vector<int64_t> eval_rows;
  int layer = 0;
  double var_nrm = 0;
  double var_raw = 0;         // the raw training rows' mean per-dimension variance
  double injection_scale = 0;
  at::Tensor mean_direction;  // (1, d) fp32: the mean of the normalised training rows
  at::Tensor mean_row;        // (1, d) fp32: the mean of the raw training rows
};

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

// What differs between the AR and the AV.
struct SftTask {
  const char* command;  // "train-ar"
  // Adds the gradient of loss_scale * (summed loss over rows); returns this call's summed
  // loss and weight (AR: rows; AV: answer tokens).
  std::function<std::pair<double, double>(const std::vector<int64_t>& rows, double loss_scale)> accumulate;
  // The normaliser of a global batch (every rank computes it for all rows).
  std::function<double(const std::vector<int64_t>& rows)> weight;
  // Collective validation.
  std::function<SftEval(int64_t step)> evaluate;
  // Collective: the checkpoint directory.
  std::function<void(const std::string& directory)> save_checkpoint;
  dist::ShardedModel* sharded = nullptr;
  dist::ShardedAdamW* optimizer = nullptr;
};

SftResult run_sft(const SftOptions& o, const SftData& data, SftTask& task, const dist::Communicator& comm,
                  const std::string& checkpoint, const StopSignals& stop) {
  const bool root = comm.rank() == 0;
  SftResult result;
  result.var_nrm = data.var_nrm;
  result.injection_scale = data.injection_scale;
  result.checkpoint = checkpoint;

  run_on_root(comm.mpi_comm(), [&] {
    fs::create_directories(o.out);
    NLA_CHECK_INPUT(std::ofstream(o.out + "/metrics.jsonl", std::ios::app).good(), o.out,
                    "/metrics.jsonl: cannot be written");
  });
  auto state = load_trainer_state(o.out, {{"model", task.optimizer}}, comm);
  const int64_t first_step = state ? state->step : 0;
  result.first_step = first_step;
  const std::string metrics_path = o.out + "/metrics.jsonl";
  std::ofstream metrics;
  if (root) {
    if (state) truncate_metrics(metrics_path, first_step);
    else fs::remove(metrics_path);
    metrics.open(metrics_path, std::ios::app);
    NLA_CHECK_INPUT(metrics.good(), metrics_path, ": cannot be written");
  }
  auto write_metrics = [&](const nlohmann::json& record) {
    if (root) metrics << record.dump() << "\n" << std::flush;
  };
  auto evaluate = [&](int64_t step) {
    auto e = task.evaluate(step);
    nlohmann::json record = {{"step", step}, {"split", "validation"}, {"loss", e.loss}, {"n", data.eval_rows.size()}};
    if (std::string(task.command) == "train-ar") {
      record["mse_nrm"] = e.mse_nrm;
      record["fve_nrm"] = e.fve_nrm;
      record["baseline_mse_nrm"] = e.baseline_mse_nrm;
      record["baseline_fve_nrm"] = e.baseline_fve_nrm;
      if (o.ar_target == "raw") {
        record["fve"] = e.fve;
        record["baseline_fve"] = e.baseline_fve;
        record["mse"] = e.loss * data.var_raw;
        log_info("%s: step %lld | val mse %.4g | fve %.4f (mean baseline 0) | fve_nrm %.4f (mean direction %.4f)",
                 task.command, static_cast<long long>(step), e.loss * data.var_raw, e.fve, e.fve_nrm,
                 e.baseline_fve_nrm);
      } else {
        log_info("%s: step %lld | val mse_nrm %.4f | fve_nrm %.4f | mean baseline mse_nrm %.4f fve_nrm %.4f",
                 task.command, static_cast<long long>(step), e.loss, e.fve_nrm, e.baseline_mse_nrm,
                 e.baseline_fve_nrm);
      }
    } else {
      record["loss_shuffled"] = e.loss_shuffled;
      record["vector_gain"] = e.loss_shuffled - e.loss;
      log_info("%s: step %lld | val loss %.4f (token-mean NLL of the answers) | with shuffled vectors %.4f: "
               "the vector is worth %.4f nats/token",
               task.command, static_cast<long long>(step), e.loss, e.loss_shuffled, e.loss_shuffled - e.loss);
    }
    write_metrics(record);
    result.evals.push_back(e);
  };
  auto save_state = [&](int64_t step) {
    TrainerState saved;
    saved.step = step;
    saved.extra = {{"command", task.command}, {"seed", o.seed}, {"batch", o.batch}};
    if (o.freeze_embeddings) saved.extra["freeze_embeddings"] = true;  // absent = false (older states)
    if (std::string(task.command) == "train-ar") saved.extra["ar_target"] = o.ar_target;  // absent = normalized
    save_trainer_state(o.out, saved, {{"model", task.optimizer}}, comm);
  };

  if (state) {
    NLA_CHECK_INPUT(state->extra.value("command", "") == task.command && state->extra.value("seed", int64_t{-1}) == o.seed &&
                        state->extra.value("batch", int64_t{-1}) == o.batch &&
                        state->extra.value("freeze_embeddings", false) == o.freeze_embeddings &&
                        (std::string(task.command) != "train-ar" ||
                         state->extra.value("ar_target", std::string("normalized")) == o.ar_target),
                    o.out, "/trainer_state/state.json: written by ", state->extra.dump(), "; expected command ",
                    task.command, ", seed ", o.seed, ", batch ", o.batch, ", freeze_embeddings ",
                    o.freeze_embeddings ? "true" : "false",
                    std::string(task.command) == "train-ar" ? ", ar_target " + o.ar_target : std::string(),
                    " to resume (or use a new 'out')");
    log_info("%s: resumed from %s/trainer_state at step %lld", task.command, o.out.c_str(),
             static_cast<long long>(first_step));
  } else {
    evaluate(0);
  }

  const int kill_signal = signal_from_name(o.kill_signal, "kill-signal");
  const int64_t per_rank = (o.batch + comm.size() - 1) / comm.size();
  const int64_t micro_batches = o.micro_batch > 0 ? (per_rank + o.micro_batch - 1) / o.micro_batch : 1;
  Progress progress(task.command, o.steps, "steps");
  progress.set(first_step);
  for (int64_t step = first_step; step < o.steps; ++step) {
    const auto start = std::chrono::steady_clock::now();
    const double lr = lr_at(step, o.steps, o.lr_max, o.lr_min, o.lr_warmup_steps);
    task.sharded->zero_grad();
    const auto rows = step_rows(data.split.train, o.batch, step, o.seed);
    const double total_weight = task.weight(rows);
    const auto mine = share_of(rows, comm.rank(), comm.size());
    double local_loss = 0;
    for (int64_t m = 0; m < micro_batches; ++m) {
      auto part = part_of(mine, m, micro_batches);
      // Every rank runs the same number of collective passes: an empty part runs one row
      // with weight zero.
      if (part.empty()) task.accumulate({data.split.train.front()}, 0.0);
      else local_loss += task.accumulate(part, 1.0 / total_weight).first;
    }
    const double loss = comm.all_reduce_scalar(local_loss) / total_weight;
    if (!std::isfinite(loss)) {
      std::string listed;
      for (int64_t row : rows) listed += (listed.empty() ? "" : ",") + std::to_string(row);
      Error error(str(task.command, ": non-finite loss at step ", step, " (sample rows ", listed,
                      "); the last trainer_state/ (step ", first_step, " or the last save) is kept"),
                  __FILE__, __LINE__);
      error.set_on_all_ranks(true);
      throw error;
    }
    const double grad_norm = o.grad_clip > 0 ? task.sharded->clip_grad_norm(o.grad_clip) : task.sharded->grad_norm();
    task.optimizer->step(lr);
    const double step_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    result.losses.push_back(loss);
    write_metrics({{"step", step + 1}, {"split", "train"}, {"loss", loss}, {"lr", lr}, {"grad_norm", grad_norm},
                   {"ms", step_ms}, {"rows", o.batch}, {"ranks", comm.size()}});
    char extra[160];
    std::snprintf(extra, sizeof extra, "loss %.4f | lr %.2e | grad norm %.3f | %.0f ms", loss, lr, grad_norm, step_ms);
    progress.set(step + 1, extra);

    const bool last = step + 1 == o.steps;
    if (last || (o.eval_every > 0 && (step + 1) % o.eval_every == 0)) evaluate(step + 1);
    const bool saved = !last && o.save_every > 0 && (step + 1) % o.save_every == 0;
    if (saved) save_state(step + 1);
    end_of_step(stop, comm.mpi_comm(),
                {.command = task.command, .step = step + 1, .steps = o.steps, .saved = saved,
                 .save = [&] { save_state(step + 1); }, .saved_to = o.out + "/trainer_state", .before_kill = {},
                 .kill_after_steps = o.kill_after_steps, .kill_signal = kill_signal});
  }
  progress.finish();
  task.save_checkpoint(result.checkpoint);
  save_state(o.steps);
  log_info("%s: checkpoint -> %s", task.command, result.checkpoint.c_str());
  return result;
}

std::string tokenizer_dir(const SftOptions& o) { return o.tokenizer.empty() ? o.model : o.tokenizer; }

// The AV's loss aggregation: true for the sequence mean (the authors'), false for the token mean.
bool sequence_mean_aggregation(const std::string& name) {
  if (name == "sequence") return true;
  NLA_CHECK_INPUT(name == "token", "option 'loss-aggregation': expected sequence or token, got '", name, "'");
  return false;
}

}  // namespace

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

namespace {

// The checked inputs of `command` (train_ar / train_av are given what check_sft_inputs made).
const SftData& checked_data(const SftInputs& inputs, const char* command) {
  NLA_CHECK(inputs.data && inputs.command == command, command, ": expected the inputs of check_sft_inputs(options, \"",
            command, "\"), got those of '", inputs.command, "'");
  return *inputs.data;
}

}  // namespace

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

// ---- AR ----------------------------------------------------------------------------------

SftResult train_ar(const SftOptions& o, const SftInputs& inputs) {
  const StopSignals stop;  // from here a stop signal waits for the next step boundary
  const auto comm = dist::Communicator::world();
  const SftData& data = checked_data(inputs, "train-ar");
  const c10::Device device = dist::resolve_device(o.device);
  const auto compute_dtype = dist::resolve_precision(o.precision, device.type());
  dist::use_deterministic_algorithms(o.deterministic, device.type());  // before the first cuBLAS call
  auto tokenizer = tokenizer::Tokenizer::from_file(tokenizer_dir(o));
  model::LoadOptions load;
  load.device = device;
  std::unique_ptr<ShardedReconstructor> ar;
  dist::FsdpOptions fsdp;
  fsdp.per_block = o.per_block;
  fsdp.compute_dtype = compute_dtype;
  autoencoder::ArObjective objective;
  objective.target = autoencoder::parse_ar_target(o.ar_target, "option 'ar-target'");
  objective.var_raw = data.var_raw;
  ar = std::make_unique<ShardedReconstructor>(autoencoder::Reconstructor::from_base(o.model, o.layer, load), comm, fsdp,
                                              objective);
  dist::ShardedAdamW optimizer(ar->sharded(), nla_adamw(o.lr_max, o.weight_decay));

  auto pick = [&](const std::vector<int64_t>& rows) {
    std::vector<std::string> out;
    // Gold descriptions are stored as answers (tags kept, what the AV learns to write); the
    // AR reads the bare explanation, as it will in GRPO and eval.
    for (int64_t row : rows) out.push_back(autoencoder::explanation_text(data.descriptions[static_cast<size_t>(row)]));
    return out;
  };
  auto batch_of = [&](const std::vector<int64_t>& rows) {
    return autoencoder::make_ar_batch(tokenizer, pick(rows), o.max_tokens, ar->critic_template(), device);
  };
  const auto mean_direction = data.mean_direction.to(device);
  const auto mean_row = data.mean_row.to(device);

  SftTask task;
  task.command = "train-ar";
  task.sharded = &ar->sharded();
  task.optimizer = &optimizer;
  task.weight = [](const std::vector<int64_t>& rows) { return static_cast<double>(rows.size()); };
  task.accumulate = [&](const std::vector<int64_t>& rows, double scale) {
    auto target = store::read_rows_tensor(*data.acts, data.layer, rows).to(device);   // (R, d)
    auto per_row = ar->accumulate_gradients(batch_of(rows), target, scale);  // (R)
    return std::make_pair(per_row.sum().item<double>(), static_cast<double>(rows.size()));
  };
  task.evaluate = [&](int64_t step) {
    double sum = 0, nrm_sum = 0, baseline_nrm_sum = 0, baseline_sum = 0;
    // Chunks of `batch` rows over all ranks; a rank without rows in a chunk runs one row
    // and ignores it, so every rank makes the same collective calls.
    for (size_t first = 0; first < data.eval_rows.size(); first += static_cast<size_t>(o.batch)) {
      std::vector<int64_t> chunk(data.eval_rows.begin() + static_cast<int64_t>(first),
                                 data.eval_rows.begin() +
                                     static_cast<int64_t>(std::min(data.eval_rows.size(), first + o.batch)));
      auto mine = share_of(chunk, comm.rank(), comm.size());
      const bool idle = mine.empty();
      if (idle) mine = {data.eval_rows.front()};
      auto target = store::read_rows_tensor(*data.acts, data.layer, mine).to(device);  // (R, d)
      auto predicted = ar->predict(batch_of(mine));                      // (R, d)
      if (idle) continue;
      sum += objective.per_row(predicted, target).sum().item<double>();
      nrm_sum += autoencoder::mse_nrm(predicted, target).sum().item<double>();
      baseline_nrm_sum += autoencoder::mse_nrm(mean_direction.expand_as(target), target).sum().item<double>();
      if (objective.target == autoencoder::ArTarget::raw)
        baseline_sum += objective.per_row(mean_row.expand_as(target), target).sum().item<double>();
    }
    const double n = static_cast<double>(data.eval_rows.size());
    SftEval e;
    e.step = step;
    e.loss = comm.all_reduce_scalar(sum) / n;
    e.mse_nrm = comm.all_reduce_scalar(nrm_sum) / n;
    e.baseline_mse_nrm = comm.all_reduce_scalar(baseline_nrm_sum) / n;
    e.fve_nrm = autoencoder::fve_nrm(e.mse_nrm, data.var_nrm);
    e.baseline_fve_nrm = autoencoder::fve_nrm(e.baseline_mse_nrm, data.var_nrm);
    if (objective.target == autoencoder::ArTarget::raw) {
      e.fve = 1.0 - e.loss;  // the loss is mse / var_raw
      e.baseline_fve = 1.0 - comm.all_reduce_scalar(baseline_sum) / n;
    }
    return e;
  };
  task.save_checkpoint = [&](const std::string& directory) {
    auto meta = autoencoder::NlaMeta::defaults("ar", ar->d_model(), o.layer, data.injection_scale);
    meta.var_nrm = data.var_nrm;
    meta.var_raw = data.var_raw;
    meta.ar_target = objective.target;
    meta.base_model = o.model;
    ar->save_checkpoint(meta, directory, tokenizer_dir(o));
  };

  const auto& memory = ar->sharded().memory();
  log_info("train-ar: layer %lld | target %s (loss %s) | %zu training rows, %zu validation rows (%zu evaluated) | "
           "var_nrm %.4f var_raw %.4g | s %.4g | %lld parameters over %d ranks (%s compute)",
           static_cast<long long>(o.layer), o.ar_target.c_str(), objective.name(), data.split.train.size(),
           data.split.validation.size(), data.eval_rows.size(), data.var_nrm, data.var_raw, data.injection_scale, static_cast<long long>(memory.total_parameters),
           comm.size(), compute_dtype == at::kBFloat16 ? "bf16" : "fp32");
  return run_sft(o, data, task, comm, o.out + "/ar", stop);
}

// ---- AV ----------------------------------------------------------------------------------

SftResult train_av(const SftOptions& o, const SftInputs& inputs) {
  const StopSignals stop;  // from here a stop signal waits for the next step boundary
  const auto comm = dist::Communicator::world();
  const SftData& data = checked_data(inputs, "train-av");
  const c10::Device device = dist::resolve_device(o.device);
  const auto compute_dtype = dist::resolve_precision(o.precision, device.type());
  dist::use_deterministic_algorithms(o.deterministic, device.type());  // before the first cuBLAS call
  auto tokenizer = tokenizer::Tokenizer::from_file(tokenizer_dir(o));
  const auto prompt = autoencoder::av_prompt(tokenizer);

  // Every row's answer ids (answer text + <|im_end|>, cut to max_tokens): cheap next to a
  // forward, and every rank needs the token counts of whole global batches.
  std::vector<std::vector<int64_t>> answers(data.descriptions.size());
  for (const auto* rows : {&data.split.train, &data.eval_rows})
    for (int64_t row : *rows) {
      auto& ids = answers[static_cast<size_t>(row)];
      if (!ids.empty()) continue;
      ids = autoencoder::answer_ids(tokenizer, data.descriptions[static_cast<size_t>(row)]);
      if (static_cast<int64_t>(ids.size()) > o.max_tokens) ids.resize(static_cast<size_t>(o.max_tokens));
    }

  model::LoadOptions load;
  load.device = device;
  dist::FsdpOptions fsdp;
  fsdp.per_block = o.per_block;
  fsdp.compute_dtype = compute_dtype;
  ShardedVerbalizer av(model::Qwen2Model::load(o.model, load), comm, fsdp);
  if (o.freeze_embeddings) av.sharded().freeze("embed");
  dist::ShardedAdamW optimizer(av.sharded(), nla_adamw(o.lr_max, o.weight_decay));

  // The answers of `rows` with the activations of `vector_rows` (the same rows but in
  // the shuffled-vector validation).
  auto batch_with_vectors = [&](const std::vector<int64_t>& rows, const std::vector<int64_t>& vector_rows) {
    std::vector<std::vector<int64_t>> batch_answers;
    for (int64_t row : rows) batch_answers.push_back(answers[static_cast<size_t>(row)]);
    auto acts = store::read_rows_tensor(*data.acts, data.layer, vector_rows);  // (R, d)
    return make_av_batch(prompt, acts, batch_answers, data.injection_scale, device, compute_dtype);
  };
  auto batch_of = [&](const std::vector<int64_t>& rows) { return batch_with_vectors(rows, rows); };
  // Validation row i borrows the activation of row i + n/2 (mod n): a derangement for n >= 2
  // that pairs rows far apart in the store (neighbouring rows share a document).
  std::map<int64_t, int64_t> borrowed_vector;
  for (size_t i = 0; i < data.eval_rows.size(); ++i)
    borrowed_vector[data.eval_rows[i]] = data.eval_rows[(i + std::max<size_t>(1, data.eval_rows.size() / 2)) %
                                                        data.eval_rows.size()];
  auto tokens_of = [&](const std::vector<int64_t>& rows) {
    double n = 0;
    for (int64_t row : rows) n += static_cast<double>(answers[static_cast<size_t>(row)].size());
    return n;
  };

  const bool sequence_mean = sequence_mean_aggregation(o.loss_aggregation);
  SftTask task;
  task.command = "train-av";
  task.sharded = &av.sharded();
  task.optimizer = &optimizer;
  // The step's loss is divided by its answers (sequence mean) or by its answer tokens.
  task.weight = [&](const std::vector<int64_t>& rows) {
    return sequence_mean ? static_cast<double>(rows.size()) : tokens_of(rows);
  };
  task.accumulate = [&](const std::vector<int64_t>& rows, double scale) {
    // (R, 2): each row's NLL (summed, or its token mean) and its tokens
    auto per_row = av.accumulate_sft_gradients(batch_of(rows), scale, sequence_mean);
    return std::make_pair(per_row.select(1, 0).sum().item<double>(), per_row.select(1, 1).sum().item<double>());
  };
  task.evaluate = [&](int64_t step) {
    double nll = 0, nll_shuffled = 0;
    for (size_t first = 0; first < data.eval_rows.size(); first += static_cast<size_t>(o.batch)) {
      std::vector<int64_t> chunk(data.eval_rows.begin() + static_cast<int64_t>(first),
                                 data.eval_rows.begin() +
                                     static_cast<int64_t>(std::min(data.eval_rows.size(), first + o.batch)));
      auto mine = share_of(chunk, comm.rank(), comm.size());
      const bool idle = mine.empty();
      if (idle) mine = {data.eval_rows.front()};
      // One batch of 2R: the rows with their own vectors, then the same answers with borrowed ones.
      const int64_t r = static_cast<int64_t>(mine.size());
      std::vector<int64_t> answer_rows = mine, vector_rows = mine;
      answer_rows.insert(answer_rows.end(), mine.begin(), mine.end());
      for (int64_t row : mine) vector_rows.push_back(borrowed_vector.at(row));
      auto logprobs = av.token_logprobs(batch_with_vectors(answer_rows, vector_rows));  // (2R, A)
      if (!idle) {
        nll -= logprobs.narrow(0, 0, r).sum().item<double>();
        nll_shuffled -= logprobs.narrow(0, r, r).sum().item<double>();
      }
    }
    SftEval e;
    e.step = step;
    e.loss = comm.all_reduce_scalar(nll) / tokens_of(data.eval_rows);
    e.loss_shuffled = comm.all_reduce_scalar(nll_shuffled) / tokens_of(data.eval_rows);
    return e;
  };
  task.save_checkpoint = [&](const std::string& directory) {
    auto meta = autoencoder::NlaMeta::defaults("av", data.acts->hidden_size(), o.layer, data.injection_scale);
    meta.var_nrm = data.var_nrm;
    meta.base_model = o.model;
    av.save_checkpoint(meta, directory, tokenizer_dir(o));
  };

  log_info("train-av: layer %lld | %zu training rows, %zu validation rows (%zu evaluated) | s %.4g | "
           "%lld parameters over %d ranks (%s compute)",
           static_cast<long long>(o.layer), data.split.train.size(), data.split.validation.size(),
           data.eval_rows.size(), data.injection_scale,
           static_cast<long long>(av.sharded().memory().total_parameters), comm.size(),
           compute_dtype == at::kBFloat16 ? "bf16" : "fp32");
  return run_sft(o, data, task, comm, o.out + "/av", stop);
}

}  // namespace nla::train
