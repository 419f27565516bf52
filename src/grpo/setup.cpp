// GRPO's setup: the options and inputs checked, the roles, the models on each role, the
// resume point, and the run logs.
#include <ATen/ATen.h>
#include <mpi.h>

#include <algorithm>

#include "grpo_run.hpp"
#include "nla/autoencoder/verbalizer.hpp"  // defines: av_store_layer
#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/core/log.hpp"
#include "nla/core/seeding.hpp"
#include "nla/core/stop_signal.hpp"  // defines: signal_from_name
#include "nla/core/world.hpp"
#include "nla/dist/device.hpp"            // defines: device_kind, resolve_device, resolve_precision
#include "nla/dist/text_collectives.hpp"  // defines: broadcast_text
#include "nla/store/activation_tensor.hpp"  // defines: read_rows_tensor

namespace nla::grpo {

namespace {

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

// What must not change across a resume (the data order and the models depend on it). Keys
// added later are recorded only when they differ from the behaviour of states written
// before them (freeze_embeddings false, the token mean, k3).
run::Fingerprint run_fingerprint(const GrpoOptions& o, int layer) {
  run::Fingerprint fingerprint;
  fingerprint.set("store", run::fingerprint_path(o.store))
      .set("av", run::fingerprint_path(o.av))
      .set("ar", run::fingerprint_path(o.ar))
      .set("layer", layer)
      .set("seed", o.seed)
      .set("activations_per_step", o.activations_per_step)
      .set("samples_per_activation", o.samples_per_activation)
      .set_since("freeze_embeddings", o.freeze_embeddings, false)
      .set_since("loss_aggregation", o.loss_aggregation, "token")
      .set_since("kl_estimator", o.kl_estimator, "k3");
  return fingerprint;
}

// Roles and inputs: rank 0 validates, every rank then repeats the (cheap, already
// validated) parsing or receives the numbers.
void setup_roles_and_inputs(GrpoRun& run) {
  const GrpoOptions& o = run.o;
  run_on_root(MPI_COMM_WORLD, [&] {
    run.layout = make_role_layout(o.layout, run.world.size(), o.trainer_ranks, o.rollout_ranks, o.reward_ranks);
    run.in = validate(o, run.layout);
    fs::create_directories(o.out);
  });
  run.layout = make_role_layout(o.layout, run.world.size(), o.trainer_ranks, o.rollout_ranks, o.reward_ranks);
  Inputs& in = run.in;
  if (run.rank != 0) {
    in.av_meta = autoencoder::NlaMeta::read(o.av);
    in.ar_meta = autoencoder::NlaMeta::read(o.ar);
  }
  at::Tensor numbers = at::tensor({static_cast<double>(in.layer), static_cast<double>(in.n_rows), in.var_nrm}, at::kDouble);
  run.world.broadcast(numbers, 0);
  in.layer = static_cast<int>(numbers[0].item<double>());
  in.n_rows = static_cast<int64_t>(numbers[1].item<double>());
  in.var_nrm = numbers[2].item<double>();
  if (run.rank != 0) in.objective = in.ar_meta.ar_objective(o.ar + "/nla_meta.yaml");  // validated on rank 0
  run.is_trainer = run.layout.has(run.rank, Role::trainer);
  run.is_rollout = run.layout.has(run.rank, Role::rollout);
  run.is_reward = run.layout.has(run.rank, Role::reward);
  run.groups = make_role_groups(run.layout, run.world);
  run.k = o.samples_per_activation;
}

// The device, the data, the prompt and the loss settings.
void setup_data(GrpoRun& run) {
  const GrpoOptions& o = run.o;
  run.tokenizer_dir = o.tokenizer.empty() ? o.av : o.tokenizer;
  run.device = dist::resolve_device(o.device);
  const auto compute_dtype = dist::resolve_precision(o.precision, run.device.type());
  dist::use_deterministic_algorithms(o.deterministic, run.device.type());  // before the first cuBLAS call
  run.load.device = run.device;  // fp32: the trainers' master weights and the reward AR
  run.rollout_load = run.load;   // the AVs that generate: in the precision, as policy->gather() gives
  run.rollout_load.dtype = compute_dtype;
  run.acts.emplace(o.store);
  run.tokenizer.emplace(tokenizer::Tokenizer::from_file(run.tokenizer_dir));
  run.prompt = autoencoder::av_prompt(*run.tokenizer, run.in.av_meta.actor_template);
  run.loss_options.clip_eps = o.clip_eps;
  run.loss_options.kl_coef = o.kl_coef;
  run.loss_options.kl_estimator = parse_kl_estimator(o.kl_estimator);
  run.loss_options.aggregation = parse_loss_aggregation(o.loss_aggregation);
  // ar-batch 0 keeps every successful pair since the last refresh; N keeps the freshest N per AR step.
  run.ar_buffer_capacity = o.ar_batch == 0 ? SIZE_MAX : static_cast<size_t>(o.ar_batch * o.ar_refresh_steps);
  log_info("grpo: %s | %lld steps x %lld activations x %lld samples | layer %d | var_nrm %.4f | AR target %s: "
           "reward -%s",
           run.layout.describe().c_str(), static_cast<long long>(o.steps), static_cast<long long>(o.activations_per_step),
           static_cast<long long>(run.k), run.in.layer, run.in.var_nrm,
           autoencoder::ar_target_name(run.in.objective.target), run.in.objective.name());
}

// Trainers: the sharded policy, its frozen SFT reference, the AR and their optimizers.
void setup_trainer_models(GrpoRun& run) {
  const GrpoOptions& o = run.o;
  if (run.is_trainer) {
    dist::FsdpOptions fsdp;
    fsdp.compute_dtype = run.rollout_load.dtype;
    const auto& trainers = run.groups.trainer;
    run.policy = std::make_unique<autoencoder::ShardedVerbalizer>(autoencoder::load_av(o.av, run.load), trainers, fsdp);
    if (o.freeze_embeddings) run.policy->sharded().freeze("embed");
    run.reference = std::make_unique<autoencoder::ShardedVerbalizer>(autoencoder::load_av(o.av, run.load), trainers, fsdp);
    run.critic = std::make_unique<autoencoder::ShardedReconstructor>(autoencoder::load_ar(o.ar, run.load), trainers,
                                                                     fsdp, run.in.objective);
    // The SFT stages' optimizer configuration (betas 0.9, 0.95), as the authors use for RL too.
    run.av_optimizer =
        std::make_unique<dist::ShardedAdamW>(run.policy->sharded(), autoencoder::nla_adamw(o.lr, o.weight_decay));
    run.ar_optimizer = std::make_unique<dist::ShardedAdamW>(
        run.critic->sharded(), autoencoder::nla_adamw(std::max(o.ar_lr, 1e-12), o.weight_decay));
  }
  run.optimizers = {{"av", run.av_optimizer.get()}, {"ar", run.ar_optimizer.get()}};
}

// trainer_state/ restores the trainers' shards; rank 0 tells every rank where it is.
void setup_resume(GrpoRun& run) {
  const GrpoOptions& o = run.o;
  run.fingerprint = run_fingerprint(o, run.in.layer);
  std::string state_text;
  if (run.is_trainer) {
    auto state = run::load_trainer_state(o.out, run.optimizers, run.groups.trainer);
    if (state) state_text = nlohmann::json{{"step", state->step}, {"extra", state->extra}}.dump();
  }
  state_text = dist::broadcast_text(run.world.mpi_comm(), state_text);
  if (state_text.empty()) return;
  const auto state = nlohmann::json::parse(state_text);
  run_on_root(MPI_COMM_WORLD, [&] {
    run.fingerprint.check(state.at("extra").value("run", nlohmann::json::object()), o.out + "/trainer_state/state.json");
  });
  run.start_step = state.at("step").get<int64_t>();
  run.ar_buffer = pairs_from_json(state.at("extra").value("ar_buffer", nlohmann::json::array()));
  log_info("grpo: resuming after step %lld from %s/trainer_state", static_cast<long long>(run.start_step), o.out.c_str());
}

// The rollout ranks' AV and the reward ranks' AR, and in split layout the weight streams.
void setup_role_models(GrpoRun& run) {
  const GrpoOptions& o = run.o;
  if (run.layout.colocate) return;  // every rank gathers the sharded models (sync.cpp)
  const int64_t bucket_bytes = o.sync_bucket_mb << 20;
  if (run.is_rollout) run.rollout_av = autoencoder::load_av(o.av, run.rollout_load);
  if (run.is_reward) run.reward_ar = autoencoder::load_ar(o.ar, run.load);
  if (run.rank == 0) run.av_stream = WeightStream::sender(run.policy->sharded(), run.groups.av_sync, bucket_bytes);
  if (run.is_rollout)
    run.av_stream = WeightStream::receiver(run.rollout_av->named_parameters(), run.groups.av_sync, bucket_bytes);
  if (run.rank == 0) run.ar_stream = WeightStream::sender(run.critic->sharded(), run.groups.ar_sync, bucket_bytes);
  if (run.is_reward)
    run.ar_stream = WeightStream::receiver(run.reward_ar->named_parameters(), run.groups.ar_sync, bucket_bytes);
}

// metrics.jsonl and eval.jsonl: the records of steps not yet checkpointed are redone.
void setup_logs(GrpoRun& run, const GrpoRunInfo& info) {
  const GrpoOptions& o = run.o;
  const std::optional<int64_t> resume = run.start_step > 0 ? std::optional<int64_t>(run.start_step) : std::nullopt;
  run.metrics = run::MetricsLog(o.out + "/metrics.jsonl", resume, MPI_COMM_WORLD);
  run_on_root(MPI_COMM_WORLD, [&] {
    if (info.on_start) info.on_start();
  });
  if (o.eval_store.empty()) return;
  HeldOut& held_out = run.held_out;
  held_out.acts.emplace(o.eval_store);
  held_out.rows = step_rows(held_out.acts->n_samples(), o.eval_rows, o.seed, -2);
  std::sort(held_out.rows.begin(), held_out.rows.end());
  held_out.seed = mix_seeds(static_cast<uint64_t>(o.seed), 0x6576616cULL);  // "eval"
  held_out.log = run::MetricsLog(o.out + "/eval.jsonl", resume, MPI_COMM_WORLD);
}

}  // namespace

std::unique_ptr<GrpoRun> setup(const GrpoOptions& o, const GrpoRunInfo& info) {
  auto run = std::make_unique<GrpoRun>(o);
  run->world = dist::Communicator::world();
  run->rank = run->world.rank();
  setup_roles_and_inputs(*run);
  setup_data(*run);
  setup_trainer_models(*run);
  setup_resume(*run);
  setup_role_models(*run);
  sync_av(*run);  // a resumed run's weights come from trainer_state/, not from the checkpoints given
  sync_ar(*run);
  setup_logs(*run, info);
  return run;
}

}  // namespace nla::grpo
