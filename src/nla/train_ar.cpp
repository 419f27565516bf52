// nla train-ar: AR SFT on an activation store's descriptions (see train_ar.hpp).
#include "nla/nla/train_ar.hpp"

#include <ATen/ATen.h>
#include <torch/optim/adamw.h>  // defines: torch::optim::AdamW (the one torch/csrc/api header here)

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "nla/core/error.hpp"
#include "nla/core/log.hpp"
#include "nla/core/progress.hpp"
#include "nla/nla/checkpoint.hpp"
#include "nla/nla/losses.hpp"
#include "nla/nla/reconstructor.hpp"
#include "nla/store/activation_store.hpp"
#include "nla/tokenizer/tokenizer.hpp"

namespace nla::autoencoder {

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Rows of the store as a (N, d) fp32 tensor.
at::Tensor read_acts(const store::ActivationStore& acts, int layer, const std::vector<int64_t>& rows) {
  auto values = acts.read_rows(layer, rows);
  int64_t n = static_cast<int64_t>(rows.size());
  return at::from_blob(values.data(), {n, acts.hidden_size()}, at::kFloat).clone();  // (N, d)
}

std::vector<std::string> pick(const std::vector<std::string>& all, const std::vector<int64_t>& rows) {
  std::vector<std::string> out;
  out.reserve(rows.size());
  for (int64_t row : rows) out.push_back(all[static_cast<size_t>(row)]);
  return out;
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

ArTrainResult train_ar(const ArTrainOptions& o, const ArTrainHooks& hooks) {
  // ---- options and inputs ------------------------------------------------------------
  NLA_CHECK_INPUT(!o.store.empty(), "option 'store': expected an activation store");
  NLA_CHECK_INPUT(!o.model.empty(), "option 'model': expected a base checkpoint directory");
  NLA_CHECK_INPUT(!o.out.empty(), "option 'out': expected a run directory");
  NLA_CHECK_INPUT(o.steps > 0 && o.batch > 0 && o.grad_accum > 0, "options 'steps', 'batch', 'grad-accum': expected > 0");
  NLA_CHECK_INPUT(o.lr_max > 0 && o.lr_min >= 0 && o.lr_min <= o.lr_max,
                  "options 'lr-max', 'lr-min': expected 0 <= lr-min <= lr-max, lr-max > 0");
  NLA_CHECK_INPUT(o.lr_warmup_steps >= 0, "option 'lr-warmup-steps': expected >= 0");
  store::ActivationStore acts(o.store);
  NLA_CHECK_INPUT(o.layer >= 0 && acts.has_layer(static_cast<int>(o.layer)), o.store, ": layer ", o.layer,
                  " is not in the store (option 'layer')");
  NLA_CHECK_INPUT(acts.has_descriptions(o.descriptions), o.store, ": /descriptions/", o.descriptions,
                  " missing (run nla label first, or set option 'descriptions')");
  auto descriptions = acts.read_descriptions(o.descriptions);
  NLA_CHECK_INPUT(static_cast<int64_t>(descriptions.size()) == acts.n_samples(), o.store, ": /descriptions/",
                  o.descriptions, ": expected ", acts.n_samples(), " entries, got ", descriptions.size());
  auto tokenizer = tokenizer::Tokenizer::from_file(o.tokenizer.empty() ? o.model : o.tokenizer);

  std::vector<int64_t> row_documents(static_cast<size_t>(acts.n_samples()));
  for (int64_t row = 0; row < acts.n_samples(); ++row) row_documents[static_cast<size_t>(row)] = acts.sample_document(row);
  auto split = split_by_document(row_documents, o.validation_fraction, o.seed);
  NLA_CHECK_INPUT(split.train.size() >= 2 && !split.validation.empty(), o.store, ": ", acts.n_samples(),
                  " samples give ", split.train.size(), " training and ", split.validation.size(),
                  " validation rows; expected both non-empty");
  std::vector<int64_t> eval_rows = split.validation;
  if (static_cast<int64_t>(eval_rows.size()) > o.max_eval_samples) eval_rows.resize(static_cast<size_t>(o.max_eval_samples));

  // ---- statistics of the normalised training activations ------------------------------
  int layer = static_cast<int>(o.layer);
  std::vector<int64_t> stat_rows = split.train;  // at most 8192 rows: enough for a mean and a variance
  if (stat_rows.size() > 8192) {
    std::mt19937_64 rng(static_cast<uint64_t>(o.seed));
    std::shuffle(stat_rows.begin(), stat_rows.end(), rng);
    stat_rows.resize(8192);
  }
  auto stat_acts = read_acts(acts, layer, stat_rows);                        // (S, d)
  double var = var_nrm(stat_acts);
  auto mean_direction = normalise_rows(stat_acts).mean(0, /*keepdim=*/true);  // (1, d)
  double injection_scale = o.injection_scale;
  if (injection_scale <= 0) {  // a round number a little above the mean norm, as the authors chose 150
    double mean_norm = stat_acts.norm(2, {1}).mean().item<double>();
    double unit = std::pow(10.0, std::floor(std::log10(mean_norm)) - 1);
    injection_scale = std::ceil(mean_norm / unit) * unit;
  }

  // ---- the AR ------------------------------------------------------------------------
  model::LoadOptions load;
  load.device = c10::Device(o.device);
  auto ar = Reconstructor::from_base(o.model, o.layer, load);
  NLA_CHECK_INPUT(ar.d_model() == acts.hidden_size(), o.store, ": hidden_size ", acts.hidden_size(),
                  " differs from the model's ", ar.d_model(), " (", o.model, ")");
  ar.set_requires_grad(true);
  auto parameters = ar.parameters();
  torch::optim::AdamW optimizer(parameters, torch::optim::AdamWOptions(o.lr_max)
                                                .betas({0.9, 0.95})
                                                .weight_decay(o.weight_decay));
  mean_direction = mean_direction.to(load.device);

  std::filesystem::create_directories(o.out);
  std::ofstream metrics(o.out + "/metrics.jsonl", std::ios::app);
  NLA_CHECK_INPUT(metrics.good(), o.out, "/metrics.jsonl: cannot be written");
  auto write_metrics = [&](const nlohmann::json& record) { metrics << record.dump() << "\n" << std::flush; };

  auto evaluate = [&](int64_t step) {
    at::NoGradGuard no_grad;
    double sum = 0, baseline_sum = 0;
    for (size_t first = 0; first < eval_rows.size(); first += static_cast<size_t>(o.batch)) {
      std::vector<int64_t> rows(eval_rows.begin() + static_cast<int64_t>(first),
                                eval_rows.begin() + static_cast<int64_t>(std::min(eval_rows.size(), first + o.batch)));
      auto target = read_acts(acts, layer, rows).to(load.device);                      // (b, d)
      auto predicted = ar.forward(ar.make_batch(tokenizer, pick(descriptions, rows), o.max_tokens));  // (b, d)
      sum += mse_nrm(predicted, target).sum().item<double>();
      baseline_sum += mse_nrm(mean_direction.expand_as(target), target).sum().item<double>();
    }
    ArEval e;
    e.step = step;
    e.mse_nrm = sum / static_cast<double>(eval_rows.size());
    e.baseline_mse_nrm = baseline_sum / static_cast<double>(eval_rows.size());
    e.fve_nrm = fve_nrm(e.mse_nrm, var);
    e.baseline_fve_nrm = fve_nrm(e.baseline_mse_nrm, var);
    log_info("train-ar: step %lld | val mse_nrm %.4f | fve_nrm %.4f | mean baseline mse_nrm %.4f fve_nrm %.4f",
             static_cast<long long>(step), e.mse_nrm, e.fve_nrm, e.baseline_mse_nrm, e.baseline_fve_nrm);
    write_metrics({{"step", step}, {"split", "validation"}, {"mse_nrm", e.mse_nrm}, {"fve_nrm", e.fve_nrm},
                   {"baseline_mse_nrm", e.baseline_mse_nrm}, {"baseline_fve_nrm", e.baseline_fve_nrm},
                   {"n", eval_rows.size()}});
    return e;
  };

  log_info("train-ar: layer %lld | %zu training rows, %zu validation rows (%zu evaluated) | var_nrm %.4f | "
           "%lld parameters",
           static_cast<long long>(o.layer), split.train.size(), split.validation.size(), eval_rows.size(), var,
           static_cast<long long>([&] {
             int64_t n = 0;
             for (auto& p : parameters) n += p.numel();
             return n;
           }()));

  // ---- step loop -----------------------------------------------------------------------
  ArTrainResult result;
  result.var_nrm = var;
  result.evals.push_back(evaluate(0));
  std::mt19937_64 rng(static_cast<uint64_t>(o.seed) + 1);
  std::vector<int64_t> order = split.train;
  std::shuffle(order.begin(), order.end(), rng);
  size_t cursor = 0;
  auto next_rows = [&](int64_t count) {  // epochs over the shuffled training rows
    std::vector<int64_t> rows;
    while (static_cast<int64_t>(rows.size()) < count) {
      if (cursor == order.size()) {
        std::shuffle(order.begin(), order.end(), rng);
        cursor = 0;
      }
      rows.push_back(order[cursor++]);
    }
    return rows;
  };

  Progress progress("train-ar", o.steps, "steps");
  for (int64_t step = 0; step < o.steps; ++step) {
    auto start = std::chrono::steady_clock::now();
    double lr = lr_at(step, o.steps, o.lr_max, o.lr_min, o.lr_warmup_steps);
    for (auto& group : optimizer.param_groups())
      static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
    optimizer.zero_grad();
    double loss_sum = 0;
    std::vector<int64_t> step_rows;
    for (int64_t micro = 0; micro < o.grad_accum; ++micro) {
      auto rows = next_rows(o.batch);
      auto target = read_acts(acts, layer, rows).to(load.device);                                   // (B, d)
      auto predicted = ar.forward(ar.make_batch(tokenizer, pick(descriptions, rows), o.max_tokens));  // (B, d)
      auto loss = mse_nrm(predicted, target).mean();
      (loss / static_cast<double>(o.grad_accum)).backward();
      loss_sum += loss.item<double>();
      step_rows.insert(step_rows.end(), rows.begin(), rows.end());
    }
    double loss = loss_sum / static_cast<double>(o.grad_accum);
    if (!std::isfinite(loss)) {
      std::string rows;
      for (int64_t row : step_rows) rows += (rows.empty() ? "" : ",") + std::to_string(row);
      NLA_THROW("train-ar: non-finite loss at step ", step, " (sample rows ", rows, "); no checkpoint written");
    }
    auto backward_done = std::chrono::steady_clock::now();
    if (hooks.after_backward) hooks.after_backward(parameters);
    double grad_norm = 0;
    {
      at::NoGradGuard no_grad;
      at::Tensor squares = at::zeros({}, at::kDouble);
      for (auto& p : parameters)
        if (p.grad().defined()) squares += p.grad().to(at::kDouble).pow(2).sum().cpu();
      grad_norm = std::sqrt(squares.item<double>());
      if (o.grad_clip > 0 && grad_norm > o.grad_clip)
        for (auto& p : parameters)
          if (p.grad().defined()) p.grad().mul_(o.grad_clip / (grad_norm + 1e-6));
    }
    optimizer.step();
    result.losses.push_back(loss);
    auto now = std::chrono::steady_clock::now();
    double step_ms = std::chrono::duration<double, std::milli>(now - start).count();
    double update_ms = std::chrono::duration<double, std::milli>(now - backward_done).count();
    write_metrics({{"step", step + 1}, {"split", "train"}, {"loss", loss}, {"lr", lr}, {"grad_norm", grad_norm},
                   {"step_ms", step_ms}, {"update_ms", update_ms}, {"samples", o.batch * o.grad_accum}});
    char extra[128];
    std::snprintf(extra, sizeof extra, "loss %.4f | lr %.2e | %.0f ms", loss, lr, step_ms);
    progress.set(step + 1, extra);
    bool last = step + 1 == o.steps;
    if (last || (o.eval_every > 0 && (step + 1) % o.eval_every == 0)) result.evals.push_back(evaluate(step + 1));
  }
  progress.finish();

  // ---- checkpoint ----------------------------------------------------------------------
  ar.set_requires_grad(false);
  auto meta = NlaMeta::defaults("ar", ar.d_model(), o.layer, injection_scale);
  meta.var_nrm = var;
  meta.base_model = o.model;
  result.checkpoint = o.out + "/ar";
  save_ar(ar, meta, result.checkpoint, o.tokenizer.empty() ? o.model : o.tokenizer);
  log_info("train-ar: AR checkpoint -> %s", result.checkpoint.c_str());
  return result;
}

}  // namespace nla::autoencoder
