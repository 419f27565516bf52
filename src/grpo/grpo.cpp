// nla grpo: RL of the AV against a live AR (see grpo.hpp for the walk-through).
#include "nla/grpo/grpo.hpp"

#include <c10/core/GradMode.h>  // c10::NoGradGuard (LibTorch 2.x has no at:: alias here)
#include <ATen/ATen.h>
#include <mpi.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <sstream>

#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/core/seeding.hpp"
#include "nla/core/log.hpp"
#include "nla/core/stop_signal.hpp"    // defines: StopSignals, StoppedBySignal
#include "nla/core/world.hpp"
#include "nla/dist/device.hpp"        // defines: device_kind, resolve_device, resolve_precision
#include "nla/grpo/loss.hpp"          // defines: group_advantages, grpo_loss_sums
#include "nla/grpo/roles.hpp"         // defines: make_role_layout, make_role_groups, my_chunks, my_block
#include "nla/grpo/weight_sync.hpp"   // defines: WeightStream
#include "nla/nla/checkpoint.hpp"
#include "nla/nla/losses.hpp"
#include "nla/nla/verbalizer.hpp"
#include "nla/store/activation_store.hpp"
#include "nla/store/activation_tensor.hpp"  // defines: read_rows_tensor
#include "nla/train/metrics_file.hpp"       // defines: truncate_metrics
#include "nla/train/sharded_nla.hpp"  // defines: ShardedVerbalizer, ShardedReconstructor, make_av_batch
#include "nla/train/trainer_state.hpp"

namespace nla::grpo {

namespace {

using Clock = std::chrono::steady_clock;

constexpr double kFailedReward = -2.0;  // DESIGN: a sample that does not close its tag
constexpr int64_t kMaxNewTokens = 150;  // DESIGN: rollouts cap the answer at 150 tokens
constexpr int64_t kArPadId = 151643;    // <|endoftext|>, masked out (as Reconstructor::make_batch)


double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// The N distinct store rows of step `step`: a function of (seed, step) only.
std::vector<int64_t> step_rows(int64_t n_rows, int64_t count, int64_t seed, int64_t step) {
  std::mt19937_64 rng(mix_seeds(static_cast<uint64_t>(seed), static_cast<uint64_t>(step) + 1));
  std::vector<int64_t> pool(static_cast<size_t>(n_rows));
  for (int64_t i = 0; i < n_rows; ++i) pool[static_cast<size_t>(i)] = i;
  for (int64_t i = 0; i < count; ++i) {  // partial Fisher-Yates; modulo keeps it portable
    const int64_t j = i + static_cast<int64_t>(rng() % static_cast<uint64_t>(n_rows - i));
    std::swap(pool[static_cast<size_t>(i)], pool[static_cast<size_t>(j)]);
  }
  pool.resize(static_cast<size_t>(count));
  return pool;
}

// Every rank's text, in rank order, on every rank of comm.
std::vector<std::string> all_gather_text(MPI_Comm comm, const std::string& mine) {
  int size = 1;
  NLA_CHECK_MPI(MPI_Comm_size(comm, &size));
  NLA_CHECK(mine.size() < static_cast<size_t>(INT32_MAX), "grpo: a rank's records exceed 2 GiB");
  int length = static_cast<int>(mine.size());
  std::vector<int> lengths(static_cast<size_t>(size)), offsets(static_cast<size_t>(size));
  NLA_CHECK_MPI(MPI_Allgather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, comm));
  int64_t total = 0;
  for (int r = 0; r < size; ++r) {
    offsets[static_cast<size_t>(r)] = static_cast<int>(total);
    total += lengths[static_cast<size_t>(r)];
  }
  NLA_CHECK(total < INT32_MAX, "grpo: the gathered records exceed 2 GiB");
  std::string all(static_cast<size_t>(total), '\0');
  NLA_CHECK_MPI(MPI_Allgatherv(mine.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR,
                               comm));
  std::vector<std::string> out;
  for (int r = 0; r < size; ++r)
    out.push_back(all.substr(static_cast<size_t>(offsets[static_cast<size_t>(r)]),
                             static_cast<size_t>(lengths[static_cast<size_t>(r)])));
  return out;
}

std::string broadcast_text(const dist::Communicator& comm, std::string text) {
  at::Tensor length = at::full({1}, static_cast<int64_t>(text.size()), at::kLong);
  comm.broadcast(length, 0);
  text.resize(static_cast<size_t>(length.item<int64_t>()));
  if (!text.empty()) {
    at::Tensor bytes = at::from_blob(text.data(), {static_cast<int64_t>(text.size())}, at::kByte);
    comm.broadcast(bytes, 0);
  }
  return text;
}

// The AR input batch (as Reconstructor::make_batch, which needs the plain model; trainers
// in split layout hold only the sharded one).
autoencoder::ArBatch make_ar_batch(const tokenizer::Tokenizer& tokenizer, const std::vector<std::string>& descriptions,
                                   const std::string& critic_template, int64_t max_tokens, c10::Device device) {
  std::vector<std::vector<tokenizer::TokenId>> sequences;
  int64_t longest = 1;
  for (const auto& description : descriptions) {
    auto ids = autoencoder::ar_input_ids(tokenizer, description, critic_template);
    if (max_tokens > 0 && static_cast<int64_t>(ids.size()) > max_tokens) ids.erase(ids.begin(), ids.end() - max_tokens);
    longest = std::max(longest, static_cast<int64_t>(ids.size()));
    sequences.push_back(std::move(ids));
  }
  const auto b = static_cast<int64_t>(sequences.size());
  autoencoder::ArBatch batch;
  batch.input_ids = at::full({b, longest}, kArPadId, at::kLong);  // (B, T)
  batch.attention_mask = at::zeros({b, longest}, at::kLong);       // (B, T)
  batch.last_index = at::zeros({b}, at::kLong);                    // (B)
  auto ids = batch.input_ids.accessor<int64_t, 2>();
  auto mask = batch.attention_mask.accessor<int64_t, 2>();
  auto last = batch.last_index.accessor<int64_t, 1>();
  for (int64_t r = 0; r < b; ++r) {
    const auto& s = sequences[static_cast<size_t>(r)];
    for (size_t t = 0; t < s.size(); ++t) {
      ids[r][static_cast<int64_t>(t)] = s[t];
      mask[r][static_cast<int64_t>(t)] = 1;
    }
    last[r] = static_cast<int64_t>(s.size()) - 1;
  }
  batch.input_ids = batch.input_ids.to(device);
  batch.attention_mask = batch.attention_mask.to(device);
  batch.last_index = batch.last_index.to(device);
  return batch;
}

// One rollout: sample j of activation i of the step.
struct Sample {
  int64_t row = -1;
  std::vector<int64_t> tokens;
  std::string explanation;  // what the AR reads: the bare text between the answer's tags
  bool failed = true;
  double mse_nrm = NAN;   // failed: NaN. The direction's error, whatever the AR's target
  double ar_loss = NAN;   // failed: NaN. The AR's objective (mse_nrm, or mse / var_raw for a raw AR)
  double reward = kFailedReward;  // -ar_loss, or kFailedReward
};

// What a set of samples scored: rewards over all, mse_nrm (and a raw AR's loss) over those
// that closed their tag.
struct SampleStats {
  int64_t samples = 0, failed = 0;
  double reward_mean = 0, reward_std = 0, mse_nrm = NAN, ar_loss = NAN, description_tokens = 0;
  double failure_rate() const { return samples ? static_cast<double>(failed) / static_cast<double>(samples) : 0.0; }
  nlohmann::json to_json(double var_nrm, autoencoder::ArTarget target) const {
    const bool any = samples > failed;
    nlohmann::json out = {{"reward_mean", reward_mean},
                          {"reward_std", reward_std},
                          {"mse_nrm", any ? nlohmann::json(mse_nrm) : nlohmann::json()},
                          {"fve_nrm", any ? nlohmann::json(autoencoder::fve_nrm(mse_nrm, var_nrm)) : nlohmann::json()},
                          {"failure_rate", failure_rate()},
                          {"description_tokens", description_tokens}};
    // A raw AR's reward is -mse / var_raw: its FVE against the training variance is 1 + reward.
    if (target == autoencoder::ArTarget::raw) out["fve"] = any ? nlohmann::json(1.0 - ar_loss) : nlohmann::json();
    return out;
  }
};
SampleStats sample_stats(const std::vector<Sample>& batch) {
  SampleStats stats;
  stats.samples = static_cast<int64_t>(batch.size());
  double reward_sum = 0, mse_sum = 0, loss_sum = 0, tokens = 0;
  for (const auto& s : batch) {
    reward_sum += s.reward;
    tokens += static_cast<double>(s.tokens.size());
    if (s.failed) {
      ++stats.failed;
    } else {
      mse_sum += s.mse_nrm;
      loss_sum += s.ar_loss;
    }
  }
  const double count = static_cast<double>(std::max<int64_t>(stats.samples, 1));
  stats.reward_mean = reward_sum / count;
  double squares = 0;
  for (const auto& s : batch) squares += (s.reward - stats.reward_mean) * (s.reward - stats.reward_mean);
  stats.reward_std = std::sqrt(squares / count);
  if (stats.samples > stats.failed) {
    stats.mse_nrm = mse_sum / static_cast<double>(stats.samples - stats.failed);
    stats.ar_loss = loss_sum / static_cast<double>(stats.samples - stats.failed);
  }
  stats.description_tokens = tokens / count;
  return stats;
}

// Mean over activations of (policy's mean reward - SFT AV's mean reward) and its standard
// error: both batches hold K samples of the same activations, in the same order.
struct PairedGain {
  double mean = 0, standard_error = 0;
};
PairedGain paired_gain(const std::vector<Sample>& policy, const std::vector<Sample>& sft, int64_t k) {
  const size_t activations = policy.size() / static_cast<size_t>(k);
  std::vector<double> differences(activations, 0.0);
  for (size_t i = 0; i < policy.size(); ++i)
    differences[i / static_cast<size_t>(k)] += (policy[i].reward - sft[i].reward) / static_cast<double>(k);
  PairedGain gain;
  for (double d : differences) gain.mean += d / static_cast<double>(activations);
  if (activations > 1) {
    double squares = 0;
    for (double d : differences) squares += (d - gain.mean) * (d - gain.mean);
    gain.standard_error = std::sqrt(squares / static_cast<double>(activations - 1) / static_cast<double>(activations));
  }
  return gain;
}

// An (explanation, activation row) pair the AR trains on.
struct ArPair {
  int64_t row = 0;
  std::string explanation;
};

nlohmann::json pairs_to_json(const std::vector<ArPair>& pairs) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& pair : pairs) out.push_back({pair.row, pair.explanation});
  return out;
}
std::vector<ArPair> pairs_from_json(const nlohmann::json& json) {
  std::vector<ArPair> pairs;
  for (const auto& item : json) pairs.push_back({item.at(0).get<int64_t>(), item.at(1).get<std::string>()});
  return pairs;
}

// An input path as run fingerprints record it: absolute and normalised, with the trailing '/'
// that the standard library's lexically_normal kept after a final "/", "." or "..", so that
// trainer states saved before nla used nla::fs still match.
std::string fingerprint_path(const std::string& path) {
  std::string normal = fs::absolute(path);
  const size_t last_slash = path.rfind('/');
  const std::string last = last_slash == std::string::npos ? path : path.substr(last_slash + 1);
  if ((last.empty() || last == "." || last == "..") && normal != "/") normal += '/';
  return normal;
}

// What must not change across a resume (the data order and the models depend on it).
nlohmann::json run_fingerprint(const GrpoOptions& o, int layer) {
  nlohmann::json fingerprint = {{"store", fingerprint_path(o.store)},
                                {"av", fingerprint_path(o.av)},
                                {"ar", fingerprint_path(o.ar)},
                                {"layer", layer},
                                {"seed", o.seed},
                                {"activations_per_step", o.activations_per_step},
                                {"samples_per_activation", o.samples_per_activation}};
  // Keys absent from states written before they existed mean the behaviour of that time
  // (freeze_embeddings false, the token mean, k3), so those states still resume when the run
  // asks for what they did (e.g. --loss-aggregation token).
  if (o.freeze_embeddings) fingerprint["freeze_embeddings"] = true;
  if (o.loss_aggregation != "token") fingerprint["loss_aggregation"] = o.loss_aggregation;
  if (o.kl_estimator != "k3") fingerprint["kl_estimator"] = o.kl_estimator;
  return fingerprint;
}

void replace_directory(const std::string& from, const std::string& to) {
  const std::string old = to + ".old";
  fs::remove_all(old);
  if (fs::exists(to)) fs::rename(to, old);
  fs::rename(from, to);
  fs::remove_all(old);
}

struct Inputs {
  int layer = -1;
  autoencoder::NlaMeta av_meta, ar_meta;
  int64_t n_rows = 0;
  double var_nrm = 0;
  autoencoder::ArObjective objective;  // the AR's target: what it is refreshed on and the reward
};

// Validates options and inputs (on rank 0; InputError reaches every rank through run_on_root).
Inputs validate(const GrpoOptions& o, const RoleLayout& layout) {
  NLA_CHECK_INPUT(!o.store.empty(), "option 'store': expected an activation store (nla extract)");
  NLA_CHECK_INPUT(!o.av.empty(), "option 'av': expected an SFT AV checkpoint directory");
  NLA_CHECK_INPUT(!o.ar.empty(), "option 'ar': expected an AR checkpoint directory (nla train-ar)");
  NLA_CHECK_INPUT(!o.out.empty(), "option 'out': expected a run directory");
  NLA_CHECK_INPUT(o.steps >= 1, "option 'steps': expected >= 1, got ", o.steps);
  NLA_CHECK_INPUT(o.activations_per_step >= 1, "option 'activations-per-step': expected >= 1");
  NLA_CHECK_INPUT(o.samples_per_activation >= 2,
                  "option 'samples-per-activation': expected >= 2 (group-relative advantages), got ",
                  o.samples_per_activation);
  NLA_CHECK_INPUT(o.max_new_tokens >= 1 && o.max_new_tokens <= kMaxNewTokens,
                  "option 'max-new-tokens': expected 1..150 (DESIGN: rollouts cap the answer at 150), got ",
                  o.max_new_tokens);
  NLA_CHECK_INPUT(o.temperature > 0, "option 'temperature': expected > 0 (GRPO samples), got ", o.temperature);
  NLA_CHECK_INPUT(o.top_p > 0 && o.top_p <= 1, "option 'top-p': expected in (0, 1], got ", o.top_p);
  NLA_CHECK_INPUT(o.rollout_batch >= 1 && o.score_batch >= 1 && o.train_batch >= 1 && o.ar_micro_batch >= 1,
                  "options 'rollout-batch', 'score-batch', 'train-batch', 'ar-micro-batch': expected >= 1");
  NLA_CHECK_INPUT(o.ar_batch >= 0, "option 'ar-batch': expected 0 (every successful sample) or >= 1, got ",
                  o.ar_batch);
  parse_kl_estimator(o.kl_estimator);
  parse_loss_aggregation(o.loss_aggregation);
  NLA_CHECK_INPUT(o.lr > 0 && o.ar_lr >= 0, "options 'lr' (> 0), 'ar-lr' (>= 0): got ", o.lr, ", ", o.ar_lr);
  NLA_CHECK_INPUT(o.clip_eps > 0 && o.clip_eps < 1, "option 'clip-eps': expected in (0, 1), got ", o.clip_eps);
  NLA_CHECK_INPUT(o.kl_coef >= 0, "option 'kl-coef': expected >= 0, got ", o.kl_coef);
  NLA_CHECK_INPUT(o.ppo_epochs >= 1, "option 'ppo-epochs': expected >= 1");
  NLA_CHECK_INPUT(o.ar_refresh_every >= 0 && o.ar_refresh_steps >= 1,
                  "options 'ar-refresh-every' (>= 0), 'ar-refresh-steps' (>= 1)");
  NLA_CHECK_INPUT(o.checkpoint_every >= 0, "option 'checkpoint-every': expected >= 0");
  NLA_CHECK_INPUT(o.sync_bucket_mb >= 1, "option 'sync-bucket-mb': expected >= 1");
  dist::resolve_precision(o.precision, dist::device_kind(o.device));  // the kind only: each rank picks its GPU later
  signal_from_name(o.kill_signal, "kill-signal");
  const int64_t samples = o.activations_per_step * o.samples_per_activation;
  const int trainers = layout.size(Role::trainer);
  NLA_CHECK_INPUT(samples >= trainers, "activations-per-step x samples-per-activation = ", o.activations_per_step,
                  " x ", o.samples_per_activation, " = ", samples, " samples per step, fewer than the ", trainers,
                  " trainer ranks; expected at least one sample per trainer rank");
  NLA_CHECK_INPUT(o.ar_refresh_every == 0 || o.ar_batch == 0 || o.ar_batch >= trainers, "option 'ar-batch': ",
                  o.ar_batch, " pairs cannot feed ", trainers, " trainer ranks; expected 0 or >= ", trainers);

  Inputs in;
  store::ActivationStore acts(o.store);
  in.av_meta = autoencoder::NlaMeta::read(o.av);
  in.ar_meta = autoencoder::NlaMeta::read(o.ar);
  in.layer = autoencoder::av_store_layer(in.av_meta, o.av, acts, static_cast<int>(o.layer));
  NLA_CHECK_INPUT(in.ar_meta.role == "ar", o.ar, "/nla_meta.yaml: key 'role': expected ar, got '", in.ar_meta.role, "'");
  NLA_CHECK_INPUT(in.ar_meta.d_model == in.av_meta.d_model, o.ar, "/nla_meta.yaml: d_model ", in.ar_meta.d_model,
                  " differs from the AV's ", in.av_meta.d_model);
  NLA_CHECK_INPUT(in.ar_meta.extraction_layer_index < 0 || in.ar_meta.extraction_layer_index == in.layer, o.ar,
                  "/nla_meta.yaml: critic.extraction_layer_index ", in.ar_meta.extraction_layer_index,
                  " differs from the layer trained on (", in.layer, ")");
  in.n_rows = acts.n_samples();
  NLA_CHECK_INPUT(o.activations_per_step <= in.n_rows, o.store, ": ", in.n_rows,
                  " samples, fewer than option 'activations-per-step' ", o.activations_per_step);
  if (in.ar_meta.var_nrm) {
    in.var_nrm = *in.ar_meta.var_nrm;
  } else {  // the authors' checkpoints lack it: measure it on (at most 8192 of) the store's rows
    auto rows = step_rows(in.n_rows, std::min<int64_t>(in.n_rows, 8192), o.seed, -1);
    in.var_nrm = autoencoder::var_nrm(store::read_rows_tensor(acts, in.layer, rows));
  }
  NLA_CHECK_INPUT(in.var_nrm > 0, o.ar, ": var_nrm ", in.var_nrm, "; expected > 0");
  in.objective = in.ar_meta.ar_objective(o.ar + "/nla_meta.yaml");
  NLA_CHECK_INPUT(o.eval_every >= 0, "option 'eval-every': expected >= 0, got ", o.eval_every);
  if (!o.eval_store.empty()) {
    store::ActivationStore held_out(o.eval_store);
    autoencoder::av_store_layer(in.av_meta, o.av, held_out, in.layer);
    NLA_CHECK_INPUT(o.eval_rows >= 1 && o.eval_rows <= held_out.n_samples(), "option 'eval-rows': expected 1..",
                    held_out.n_samples(), " (the samples in ", o.eval_store, "), got ", o.eval_rows);
  }
  return in;
}

}  // namespace

void run_grpo(const GrpoOptions& o, const GrpoRunInfo& info) {
  const StopSignals stop;  // from here a stop signal waits for the next step boundary
  // ---- roles and inputs -----------------------------------------------------------------
  auto world = dist::Communicator::world();
  const int rank = world.rank();
  RoleLayout layout;
  Inputs in;
  nlohmann::json resume_json;
  run_on_root(MPI_COMM_WORLD, [&] {
    layout = make_role_layout(o.layout, world.size(), o.trainer_ranks, o.rollout_ranks, o.reward_ranks);
    in = validate(o, layout);
    fs::create_directories(o.out);
  });
  // Every rank repeats the (cheap, already validated) parsing instead of receiving it.
  layout = make_role_layout(o.layout, world.size(), o.trainer_ranks, o.rollout_ranks, o.reward_ranks);
  if (rank != 0) {
    in.av_meta = autoencoder::NlaMeta::read(o.av);
    in.ar_meta = autoencoder::NlaMeta::read(o.ar);
  }
  {
    at::Tensor numbers = at::tensor({static_cast<double>(in.layer), static_cast<double>(in.n_rows), in.var_nrm}, at::kDouble);
    world.broadcast(numbers, 0);
    in.layer = static_cast<int>(numbers[0].item<double>());
    in.n_rows = static_cast<int64_t>(numbers[1].item<double>());
    in.var_nrm = numbers[2].item<double>();
  }
  if (rank != 0) in.objective = in.ar_meta.ar_objective(o.ar + "/nla_meta.yaml");  // validated on rank 0
  const bool is_trainer = layout.has(rank, Role::trainer);
  const bool is_rollout = layout.has(rank, Role::rollout);
  const bool is_reward = layout.has(rank, Role::reward);
  auto groups = make_role_groups(layout, world);
  const int64_t n = o.activations_per_step, k = o.samples_per_activation, samples = n * k;
  const int64_t bucket_bytes = o.sync_bucket_mb << 20;
  const int kill_signal = signal_from_name(o.kill_signal, "kill-signal");
  const std::string tokenizer_dir = o.tokenizer.empty() ? o.av : o.tokenizer;
  const c10::Device device = dist::resolve_device(o.device);
  const auto compute_dtype = dist::resolve_precision(o.precision, device.type());
  dist::use_deterministic_algorithms(o.deterministic, device.type());  // before the first cuBLAS call
  model::LoadOptions load;  // fp32: the trainers' master weights and the reward AR
  load.device = device;
  model::LoadOptions rollout_load = load;  // the AVs that generate: in the precision, as policy->gather() gives
  rollout_load.dtype = compute_dtype;
  dist::FsdpOptions fsdp;
  fsdp.compute_dtype = compute_dtype;
  store::ActivationStore acts(o.store);
  auto tokenizer = tokenizer::Tokenizer::from_file(tokenizer_dir);
  const auto prompt = autoencoder::av_prompt(tokenizer, in.av_meta.actor_template);
  const double injection_scale = in.av_meta.injection_scale;
  log_info("grpo: %s | %lld steps x %lld activations x %lld samples | layer %d | var_nrm %.4f | AR target %s: "
           "reward -%s",
           layout.describe().c_str(), static_cast<long long>(o.steps), static_cast<long long>(n),
           static_cast<long long>(k), in.layer, in.var_nrm, autoencoder::ar_target_name(in.objective.target),
           in.objective.name());

  // ---- models: trainers hold the sharded AV, its frozen SFT reference and the AR ---------
  std::unique_ptr<train::ShardedVerbalizer> policy, reference;
  std::unique_ptr<train::ShardedReconstructor> critic;
  std::unique_ptr<dist::ShardedAdamW> av_optimizer, ar_optimizer;
  if (is_trainer) {
    policy = std::make_unique<train::ShardedVerbalizer>(autoencoder::load_av(o.av, load), groups.trainer, fsdp);
    if (o.freeze_embeddings) policy->sharded().freeze("embed");
    reference = std::make_unique<train::ShardedVerbalizer>(autoencoder::load_av(o.av, load), groups.trainer, fsdp);
    critic = std::make_unique<train::ShardedReconstructor>(autoencoder::load_ar(o.ar, load), groups.trainer, fsdp,
                                                           in.objective);
    // The SFT stages' optimizer configuration (betas 0.9, 0.95), as the authors use for RL too.
    av_optimizer = std::make_unique<dist::ShardedAdamW>(policy->sharded(), train::nla_adamw(o.lr, o.weight_decay));
    ar_optimizer = std::make_unique<dist::ShardedAdamW>(critic->sharded(),
                                                        train::nla_adamw(std::max(o.ar_lr, 1e-12), o.weight_decay));
  }
  const train::NamedOptimizers optimizers = {{"av", av_optimizer.get()}, {"ar", ar_optimizer.get()}};

  // ---- resume: trainer_state/ restores the shards; rank 0 tells every rank where it is ---
  int64_t start_step = 0;
  std::vector<ArPair> ar_buffer;  // the freshest successful pairs since the last AR refresh
  const auto fingerprint = run_fingerprint(o, in.layer);
  {
    std::string state_text;
    if (is_trainer) {
      auto state = train::load_trainer_state(o.out, optimizers, groups.trainer);
      if (state) state_text = nlohmann::json{{"step", state->step}, {"extra", state->extra}}.dump();
    }
    state_text = broadcast_text(world, state_text);
    run_on_root(MPI_COMM_WORLD, [&] {
      if (state_text.empty()) return;
      auto saved = nlohmann::json::parse(state_text).at("extra").value("run", nlohmann::json::object());
      NLA_CHECK_INPUT(saved == fingerprint, o.out, "/trainer_state: written by a run with ", saved.dump(),
                      "; this run has ", fingerprint.dump(), " (use another 'out' or the same options)");
    });
    if (!state_text.empty()) {
      auto state = nlohmann::json::parse(state_text);
      start_step = state.at("step").get<int64_t>();
      ar_buffer = pairs_from_json(state.at("extra").value("ar_buffer", nlohmann::json::array()));
      log_info("grpo: resuming after step %lld from %s/trainer_state", static_cast<long long>(start_step),
               o.out.c_str());
    }
  }

  // ---- rollout and reward models, and the weight streams of split layout ---------------
  std::optional<model::Qwen2Model> rollout_av;
  std::optional<autoencoder::Reconstructor> reward_ar;
  WeightStream av_stream, ar_stream;
  if (!layout.colocate) {
    if (is_rollout) rollout_av = autoencoder::load_av(o.av, rollout_load);
    if (is_reward) reward_ar = autoencoder::load_ar(o.ar, load);
    if (rank == 0) av_stream = WeightStream::sender(policy->sharded(), groups.av_sync, bucket_bytes);
    if (is_rollout) av_stream = WeightStream::receiver(rollout_av->named_parameters(), groups.av_sync, bucket_bytes);
    if (rank == 0) ar_stream = WeightStream::sender(critic->sharded(), groups.ar_sync, bucket_bytes);
    if (is_reward) ar_stream = WeightStream::receiver(reward_ar->named_parameters(), groups.ar_sync, bucket_bytes);
  }
  auto sync_av = [&] {
    if (layout.colocate) {
      rollout_av = policy->gather();  // collective over the world (= the trainer group)
      return;
    }
    if (is_trainer) WeightStream::send(policy->sharded(), rank == 0 ? &av_stream : nullptr);
    if (is_rollout) av_stream.receive();
  };
  auto sync_ar = [&] {
    if (layout.colocate) {
      reward_ar = critic->gather();
      return;
    }
    if (is_trainer) WeightStream::send(critic->sharded(), rank == 0 ? &ar_stream : nullptr);
    if (is_reward) ar_stream.receive();
  };
  sync_av();  // a resumed run's weights come from trainer_state/, not from the checkpoints given
  sync_ar();

  // ---- run directory: metrics of steps not yet checkpointed are redone -------------------
  const std::string metrics_path = o.out + "/metrics.jsonl";
  std::ofstream metrics;
  run_on_root(MPI_COMM_WORLD, [&] {
    train::truncate_metrics(metrics_path, start_step);
    metrics.open(metrics_path, std::ios::app);
    NLA_CHECK_INPUT(metrics.good(), metrics_path, ": cannot be written");
    if (info.on_start) info.on_start();
  });

  auto checkpoint = [&](int64_t done_steps) {
    if (!is_trainer) return;
    const std::string av_tmp = fs::join(o.out, "av.tmp");
    const std::string ar_tmp = fs::join(o.out, "ar.tmp");
    run_on_root(groups.trainer.mpi_comm(), [&] {
      fs::remove_all(av_tmp);
      fs::remove_all(ar_tmp);
    });
    policy->save_checkpoint(in.av_meta, av_tmp, tokenizer_dir);
    critic->save_checkpoint(in.ar_meta, ar_tmp, tokenizer_dir);
    run_on_root(groups.trainer.mpi_comm(), [&] {
      replace_directory(av_tmp, fs::join(o.out, "av"));
      replace_directory(ar_tmp, fs::join(o.out, "ar"));
    });
    train::TrainerState state;
    state.step = done_steps;
    state.extra = {{"run", fingerprint}, {"ar_buffer", pairs_to_json(ar_buffer)}};
    train::save_trainer_state(o.out, state, optimizers, groups.trainer);  // last: marks the step done
    log_info("grpo: checkpoint after step %lld -> %s/{av,ar,trainer_state}", static_cast<long long>(done_steps),
             o.out.c_str());
  };

  // ---- generate and score: the training steps and the held-out evaluation ---------------
  // K samples for each of `rows` from `av` (the rollout ranks' model; null elsewhere), in
  // chunks of rollout_batch activations dealt to the rollout ranks; every rank gets them all.
  auto generate = [&](const model::Qwen2Model* av, const store::ActivationStore& store, const std::vector<int64_t>& rows,
                      uint64_t seed, const std::string& what, int64_t* generated_tokens) {
    const int64_t count = static_cast<int64_t>(rows.size()), total = count * k;
    nlohmann::json mine = nlohmann::json::array();
    if (is_rollout) {
      // The failure rule sizes AR inputs with the critic template of the AR that scores them.
      autoencoder::Verbalizer verbalizer(*av, tokenizer, injection_scale, in.av_meta.actor_template,
                                         in.ar_meta.critic_template);
      autoencoder::VerbalizeOptions generation;
      generation.max_new_tokens = o.max_new_tokens;
      generation.temperature = o.temperature;
      generation.top_p = o.top_p;
      generation.seed = seed;
      generation.samples_per_activation = k;
      generation.batch = o.rollout_batch * k;
      const int64_t chunks = (count + o.rollout_batch - 1) / o.rollout_batch;
      for (int64_t chunk : my_chunks(chunks, layout.index(rank, Role::rollout), layout.size(Role::rollout))) {
        const int64_t first = chunk * o.rollout_batch, size = std::min(o.rollout_batch, count - first);
        std::vector<int64_t> chunk_rows(rows.begin() + first, rows.begin() + first + size);
        auto result = verbalizer.verbalize(store::read_rows_tensor(store, in.layer, chunk_rows), chunk_rows, generation);
        for (size_t f = 0; f < result.size(); ++f)
          mine.push_back({first * k + static_cast<int64_t>(f), result[f].tokens, result[f].explanation,
                          result[f].failed});
      }
    }
    std::vector<Sample> batch(static_cast<size_t>(total));
    int64_t received = 0;
    for (const auto& text : all_gather_text(MPI_COMM_WORLD, mine.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))) {
      for (const auto& record : nlohmann::json::parse(text)) {
        auto& s = batch.at(record.at(0).get<size_t>());
        s.tokens = record.at(1).get<std::vector<int64_t>>();
        s.explanation = record.at(2).get<std::string>();
        s.failed = record.at(3).get<bool>();
        if (generated_tokens) *generated_tokens += static_cast<int64_t>(s.tokens.size());
        ++received;
      }
    }
    NLA_CHECK(received == total, "grpo: ", what, ": ", received, " rollouts gathered, expected ", total);
    for (int64_t i = 0; i < total; ++i) batch[static_cast<size_t>(i)].row = rows[static_cast<size_t>(i / k)];
    return batch;
  };
  // Sets mse_nrm, ar_loss and reward = -ar_loss of every sample that closed its tag, with the
  // reward ranks' AR: chunks of score_batch samples dealt to the reward ranks.
  auto score = [&](std::vector<Sample>& batch, const store::ActivationStore& store, const std::string& what) {
    const int64_t total = static_cast<int64_t>(batch.size());
    nlohmann::json scored = nlohmann::json::array();
    if (is_reward) {
      c10::NoGradGuard no_grad;
      const int64_t chunks = (total + o.score_batch - 1) / o.score_batch;
      for (int64_t chunk : my_chunks(chunks, layout.index(rank, Role::reward), layout.size(Role::reward))) {
        std::vector<int64_t> indices, chunk_rows;
        std::vector<std::string> descriptions;
        for (int64_t i = chunk * o.score_batch; i < std::min(total, (chunk + 1) * o.score_batch); ++i) {
          const auto& s = batch[static_cast<size_t>(i)];
          if (s.failed) continue;
          indices.push_back(i);
          chunk_rows.push_back(s.row);
          descriptions.push_back(s.explanation);
        }
        if (indices.empty()) continue;
        auto predicted = reward_ar->forward(reward_ar->make_batch(tokenizer, descriptions, o.ar_max_tokens));  // (b, d)
        auto truth = store::read_rows_tensor(store, in.layer, chunk_rows).to(device);                        // (b, d)
        auto errors = autoencoder::mse_nrm(predicted, truth).to(at::kDouble).cpu();                           // (b)
        auto losses = in.objective.per_row(predicted, truth).to(at::kDouble).cpu();                          // (b)
        for (size_t q = 0; q < indices.size(); ++q)
          scored.push_back({indices[q], errors[static_cast<int64_t>(q)].item<double>(),
                            losses[static_cast<int64_t>(q)].item<double>()});
      }
    }
    for (const auto& text : all_gather_text(MPI_COMM_WORLD, scored.dump()))
      for (const auto& record : nlohmann::json::parse(text)) {
        auto& s = batch.at(record.at(0).get<size_t>());
        s.mse_nrm = record.at(1).get<double>();
        s.ar_loss = record.at(2).get<double>();
        NLA_CHECK(std::isfinite(s.mse_nrm) && std::isfinite(s.ar_loss), "grpo: ", what, ": non-finite AR error for "
                  "store row ", s.row, " of ", store.path());
        s.reward = -s.ar_loss;
      }
  };

  // ---- held-out evaluation: the policy against the SFT AV it started from, on the same
  // activations with the same sampling seeds and the same (current) AR; eval.jsonl --------
  std::optional<store::ActivationStore> eval_acts;
  std::vector<int64_t> eval_rows;
  std::vector<Sample> sft_eval_samples;  // the SFT AV does not change: sampled once, re-scored each time
  const uint64_t eval_seed = mix_seeds(static_cast<uint64_t>(o.seed), 0x6576616cULL);  // "eval"
  const std::string eval_path = o.out + "/eval.jsonl";
  if (!o.eval_store.empty()) {
    eval_acts.emplace(o.eval_store);
    eval_rows = step_rows(eval_acts->n_samples(), o.eval_rows, o.seed, -2);
    std::sort(eval_rows.begin(), eval_rows.end());
    run_on_root(MPI_COMM_WORLD, [&] { train::truncate_metrics(eval_path, start_step); });
  }
  auto evaluate = [&](int64_t done_steps) {
    const auto eval_start = Clock::now();
    if (sft_eval_samples.empty()) {
      std::optional<model::Qwen2Model> sft_av;
      if (is_rollout) sft_av = autoencoder::load_av(o.av, rollout_load);
      sft_eval_samples = generate(sft_av ? &*sft_av : nullptr, *eval_acts, eval_rows, eval_seed, "eval (SFT AV)", nullptr);
    }
    std::vector<Sample> sft = sft_eval_samples;
    score(sft, *eval_acts, "eval (SFT AV)");
    std::vector<Sample> current = sft;  // before the first update the policy is the SFT AV
    if (done_steps > 0) {
      current = generate(rollout_av ? &*rollout_av : nullptr, *eval_acts, eval_rows, eval_seed, "eval", nullptr);
      score(current, *eval_acts, "eval");
    }
    if (rank != 0) return;
    const auto policy_stats = sample_stats(current), sft_stats = sample_stats(sft);
    const auto gain = paired_gain(current, sft, k);
    nlohmann::json record = {{"step", done_steps},
                             {"rows", static_cast<int64_t>(eval_rows.size())},
                             {"samples_per_activation", k},
                             {"policy", policy_stats.to_json(in.var_nrm, in.objective.target)},
                             {"sft", sft_stats.to_json(in.var_nrm, in.objective.target)},
                             {"reward_gain", gain.mean},
                             {"reward_gain_se", gain.standard_error},
                             {"seconds", seconds_since(eval_start)}};
    std::ofstream out(eval_path, std::ios::app);
    out << record.dump() << "\n" << std::flush;
    NLA_CHECK(out.good(), eval_path, ": cannot be written");
    log_info("grpo: eval after step %lld on %zu activations of %s x %lld | reward %.4f (SFT AV %.4f, gain %.4f +- %.4f)"
             " | failed %.0f%% (SFT AV %.0f%%) | %s",
             static_cast<long long>(done_steps), eval_rows.size(), fs::filename(o.eval_store).c_str(),
             static_cast<long long>(k), policy_stats.reward_mean,
             sft_stats.reward_mean, gain.mean, gain.standard_error, 100.0 * policy_stats.failure_rate(),
             100.0 * sft_stats.failure_rate(), format_duration(seconds_since(eval_start)).c_str());
  };
  if (eval_acts && start_step == 0) evaluate(0);

  // ---- step loop ------------------------------------------------------------------------
  // ar-batch 0 keeps every successful pair since the last refresh; N keeps the freshest N per AR step.
  const size_t ar_buffer_capacity =
      o.ar_batch == 0 ? SIZE_MAX : static_cast<size_t>(o.ar_batch * o.ar_refresh_steps);
  LossOptions loss_options;
  loss_options.clip_eps = o.clip_eps;
  loss_options.kl_coef = o.kl_coef;
  loss_options.kl_estimator = parse_kl_estimator(o.kl_estimator);
  loss_options.aggregation = parse_loss_aggregation(o.loss_aggregation);
  const auto loop_start = Clock::now();
  for (int64_t step = start_step; step < o.steps; ++step) {
    const auto step_start = Clock::now();
    const auto rows = step_rows(in.n_rows, n, o.seed, step);

    auto phase_start = Clock::now();
    int64_t generated_tokens = 0;
    auto batch = generate(rollout_av ? &*rollout_av : nullptr, acts, rows,
                          mix_seeds(static_cast<uint64_t>(o.seed), static_cast<uint64_t>(step) + 1),
                          "step " + std::to_string(step + 1), &generated_tokens);
    const double generate_s = seconds_since(phase_start);

    phase_start = Clock::now();
    score(batch, acts, "step " + std::to_string(step + 1));
    const double score_s = seconds_since(phase_start);

    // update: the AV on the step's rollouts, then (every ar_refresh_every steps) the AR
    phase_start = Clock::now();
    std::vector<double> rewards;
    for (const auto& s : batch) rewards.push_back(s.reward);
    AdvantageOptions advantage_options;
    advantage_options.scale_by_std = o.advantage_std;
    const auto advantages = group_advantages(rewards, k, advantage_options);
    double global_tokens = 0, global_sequences = 0;
    for (const auto& s : batch) {
      global_tokens += static_cast<double>(s.tokens.size());
      global_sequences += s.tokens.empty() ? 0.0 : 1.0;
    }
    // The AV's loss is divided by the step's samples (sequence mean) or tokens (token mean).
    const double loss_divisor = loss_units(loss_options.aggregation, global_tokens, global_sequences);
    for (const auto& s : batch)
      if (!s.failed) ar_buffer.push_back({s.row, s.explanation});
    if (ar_buffer.size() > ar_buffer_capacity)
      ar_buffer.erase(ar_buffer.begin(), ar_buffer.end() - static_cast<int64_t>(ar_buffer_capacity));
    const bool refresh_ar = o.ar_refresh_every > 0 && (step + 1) % o.ar_refresh_every == 0 &&
                            ar_buffer.size() >= static_cast<size_t>(layout.size(Role::trainer));
    at::Tensor update_sums = at::zeros({5}, at::kDouble);  // loss, kl (epoch 0), clipped, ar mse sum, ar rows
    double grad_norm = 0;
    if (is_trainer) {
      const int trainers = layout.size(Role::trainer), index = layout.index(rank, Role::trainer);
      const auto [begin, end] = my_block(samples, index, trainers);
      // Every trainer rank runs the same number of micro-batches, each with >= 1 row.
      const int64_t largest = (samples + trainers - 1) / trainers, smallest = samples / trainers;
      const int64_t micro_batches = std::min((largest + o.train_batch - 1) / o.train_batch, smallest);
      struct Micro {
        train::AvBatch batch;
        at::Tensor old_logprobs, ref_logprobs, advantages;  // (B, A), (B, A), (B)
      };
      std::vector<Micro> micros;
      for (int64_t m = 0; m < micro_batches; ++m) {
        const auto [first, last] = my_block(end - begin, static_cast<int>(m), static_cast<int>(micro_batches));
        std::vector<int64_t> micro_rows;
        std::vector<std::vector<int64_t>> answers;
        std::vector<double> micro_advantages;
        for (int64_t i = begin + first; i < begin + last; ++i) {
          micro_rows.push_back(batch[static_cast<size_t>(i)].row);
          answers.push_back(batch[static_cast<size_t>(i)].tokens);
          micro_advantages.push_back(advantages[static_cast<size_t>(i)]);
        }
        Micro micro;
        micro.batch = train::make_av_batch(prompt, store::read_rows_tensor(acts, in.layer, micro_rows), answers, injection_scale,
                                           device, policy->sharded().compute_dtype());
        micro.batch.temperature = o.temperature;  // the ratio and the KL of the distribution sampled
        micro.old_logprobs = policy->token_logprobs(micro.batch);
        micro.ref_logprobs = reference->token_logprobs(micro.batch);
        micro.advantages = at::tensor(micro_advantages, at::kDouble).to(device);
        micros.push_back(std::move(micro));
      }
      for (int64_t epoch = 0; epoch < o.ppo_epochs; ++epoch) {
        policy->sharded().zero_grad();
        for (auto& micro : micros) {
          policy->accumulate_gradients(micro.batch, [&](const at::Tensor& logprobs) {
            auto sums = grpo_loss_sums(logprobs, micro.old_logprobs, micro.ref_logprobs, micro.advantages,
                                       micro.batch.answer_mask, loss_options);
            update_sums[0] += sums.loss.item<double>() / loss_divisor;
            if (epoch == 0) update_sums[1] += sums.kl;
            update_sums[2] += sums.clipped;
            return sums.loss / loss_divisor;  // the mean over the global batch's samples or tokens
          });
        }
        grad_norm = o.grad_clip > 0 ? policy->sharded().clip_grad_norm(o.grad_clip) : policy->sharded().grad_norm();
        av_optimizer->step(o.lr);
      }
      if (refresh_ar) {
        // Refresh step r trains on global batch r of the pairs, newest first: every pair with
        // ar-batch 0 (the authors'), else the freshest ar-batch. Each trainer rank takes its
        // block in micro-batches of at most ar-micro-batch rows, the same count on every rank
        // (each a collective with >= 1 row), gradients accumulated into one AR step.
        const int64_t pool = static_cast<int64_t>(ar_buffer.size());
        const int64_t global = o.ar_batch == 0 ? pool : std::min(o.ar_batch, pool);
        const int64_t largest = (global + trainers - 1) / trainers, smallest = global / trainers;
        const int64_t ar_micros = std::min((largest + o.ar_micro_batch - 1) / o.ar_micro_batch, smallest);
        for (int64_t r = 0; r < o.ar_refresh_steps; ++r) {
          const auto [first, last] = my_block(global, index, trainers);
          critic->sharded().zero_grad();
          for (int64_t m = 0; m < ar_micros; ++m) {
            const auto [micro_first, micro_last] =
                my_block(last - first, static_cast<int>(m), static_cast<int>(ar_micros));
            std::vector<int64_t> pair_rows;
            std::vector<std::string> explanations;
            for (int64_t q = first + micro_first; q < first + micro_last; ++q) {
              const auto& pair = ar_buffer[static_cast<size_t>(pool - 1 - (r * global + q) % pool)];
              pair_rows.push_back(pair.row);
              explanations.push_back(pair.explanation);
            }
            auto errors = critic->accumulate_gradients(
                make_ar_batch(tokenizer, explanations, critic->critic_template(), o.ar_max_tokens, device),
                store::read_rows_tensor(acts, in.layer, pair_rows).to(device), 1.0 / static_cast<double>(global));
            update_sums[3] += errors.to(at::kDouble).sum().item<double>();
            update_sums[4] += static_cast<double>(pair_rows.size());
          }
          if (o.grad_clip > 0) critic->sharded().clip_grad_norm(o.grad_clip);
          ar_optimizer->step(o.ar_lr);
        }
      }
      groups.trainer.all_reduce(update_sums);
    }
    if (refresh_ar) ar_buffer.clear();
    const double update_s = seconds_since(phase_start);

    // sync: new AV to the rollout ranks; new AR to the reward ranks when it changed
    phase_start = Clock::now();
    sync_av();
    if (refresh_ar) sync_ar();
    const double sync_s = seconds_since(phase_start);

    // metrics: rank 0 (a trainer in both layouts) has every number
    if (rank == 0) {
      const auto stats = sample_stats(batch);
      const double step_s = seconds_since(step_start);
      auto sums = update_sums.accessor<double, 1>();
      nlohmann::json record = {{"step", step + 1}};
      record.update(stats.to_json(in.var_nrm, in.objective.target));
      record.update(nlohmann::json{
          {"kl", sums[1] / global_tokens},
          {"loss", sums[0] / static_cast<double>(o.ppo_epochs)},
          {"clip_fraction", sums[2] / (global_tokens * static_cast<double>(o.ppo_epochs))},
          {"grad_norm", grad_norm},
          {"ar_refreshed", refresh_ar},
          // the AR's objective over its refresh pairs: mse_nrm, or mse / var_raw for a raw AR
          {in.objective.target == autoencoder::ArTarget::raw ? "ar_loss" : "ar_mse_nrm",
           refresh_ar && sums[4] > 0 ? nlohmann::json(sums[3] / sums[4]) : nlohmann::json()},
          {"ar_pairs", refresh_ar ? sums[4] / static_cast<double>(o.ar_refresh_steps) : 0.0},  // per AR step
          {"rollout_tokens_per_s", static_cast<double>(generated_tokens) / std::max(generate_s, 1e-9)},
          {"seconds", {{"generate", generate_s}, {"score", score_s}, {"update", update_s}, {"sync", sync_s},
                       {"step", step_s}}}});
      metrics << record.dump() << "\n" << std::flush;
      log_info("grpo: step %lld/%lld | reward %.4f +- %.4f | fve_nrm %s | failed %.0f%% | kl %.4f | len %.1f | "
               "gen %s score %s update %s sync %s | ETA %s",
               static_cast<long long>(step + 1), static_cast<long long>(o.steps), stats.reward_mean, stats.reward_std,
               record["fve_nrm"].is_null() ? "-" : std::to_string(record["fve_nrm"].get<double>()).substr(0, 6).c_str(),
               100.0 * stats.failure_rate(), sums[1] / global_tokens, stats.description_tokens,
               format_duration(generate_s).c_str(), format_duration(score_s).c_str(), format_duration(update_s).c_str(),
               format_duration(sync_s).c_str(),
               format_duration(seconds_since(loop_start) / static_cast<double>(step + 1 - start_step) *
                               static_cast<double>(o.steps - step - 1)).c_str());
    }
    const bool last = step + 1 == o.steps;
    if (eval_acts && (last || (o.eval_every > 0 && (step + 1) % o.eval_every == 0))) evaluate(step + 1);

    const bool saved = last || (o.checkpoint_every > 0 && (step + 1) % o.checkpoint_every == 0);
    if (saved) checkpoint(step + 1);
    end_of_step(stop, MPI_COMM_WORLD,
                {.command = "grpo", .step = step + 1, .steps = o.steps, .saved = saved,
                 .save = [&] { checkpoint(step + 1); }, .saved_to = o.out + " (av/, ar/, trainer_state/)",
                 .before_kill = [&] { metrics.flush(); }, .kill_after_steps = o.kill_after_steps,
                 .kill_signal = kill_signal});
  }
  if (start_step >= o.steps) log_info("grpo: %s already holds all %lld steps", o.out.c_str(), static_cast<long long>(o.steps));
  world.barrier();
  log_info("grpo: done: %s/av, %s/ar, %s/metrics.jsonl", o.out.c_str(), o.out.c_str(), o.out.c_str());
}

}  // namespace nla::grpo
