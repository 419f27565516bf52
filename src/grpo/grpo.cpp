// nla grpo: RL of the AV against a live AR (see grpo.hpp for the walk-through). This file
// is the loop; setup() builds the run's state and each phase has its own file (grpo_run.hpp).
#include "nla/grpo/grpo.hpp"

#include <mpi.h>

#include <nlohmann/json.hpp>

#include <cstdio>

#include "grpo_run.hpp"
#include "nla/core/log.hpp"
#include "nla/core/seeding.hpp"
#include "nla/core/stop_signal.hpp"  // defines: StopSignals, end_of_step, signal_from_name
#include "nla/run/step_clock.hpp"

namespace nla::grpo {

namespace {

// metrics.jsonl's record of a step: rank 0 (a trainer in both layouts) has every number.
nlohmann::json step_record(const GrpoRun& run, int64_t done_steps, const SampleStats& stats, const UpdateSums& sums,
                           bool ar_refreshed, double rollout_tokens_per_s, const run::StepClock& clock) {
  const GrpoOptions& o = run.o;
  const double epochs = static_cast<double>(o.ppo_epochs);
  nlohmann::json record = {{"step", done_steps}};
  record.update(stats.to_json(run.in.var_nrm, run.in.objective.target));
  record.update(nlohmann::json{
      {"kl", sums.kl / sums.tokens},
      {"loss", sums.loss / epochs},
      {"clip_fraction", sums.clipped / (sums.tokens * epochs)},
      {"grad_norm", sums.grad_norm},
      {"ar_refreshed", ar_refreshed},
      // the AR's objective over its refresh pairs: mse_nrm, or mse / var_raw for a raw AR
      {run.in.objective.target == autoencoder::ArTarget::raw ? "ar_loss" : "ar_mse_nrm",
       ar_refreshed && sums.ar_rows > 0 ? nlohmann::json(sums.ar_error_sum / sums.ar_rows) : nlohmann::json()},
      {"ar_pairs", ar_refreshed ? sums.ar_rows / static_cast<double>(o.ar_refresh_steps) : 0.0},  // per AR step
      {"rollout_tokens_per_s", rollout_tokens_per_s},
      {"seconds", clock.seconds_json()}});
  return record;
}

std::string step_line(const nlohmann::json& record, const SampleStats& stats, const run::StepClock& clock) {
  char line[256];
  std::snprintf(line, sizeof line, "reward %.4f +- %.4f | fve_nrm %s | failed %.0f%% | kl %.4f | len %.1f | ",
                stats.reward_mean, stats.reward_std,
                record["fve_nrm"].is_null() ? "-" : std::to_string(record["fve_nrm"].get<double>()).substr(0, 6).c_str(),
                100.0 * stats.failure_rate(), record["kl"].get<double>(), stats.description_tokens);
  return line + clock.phases_text();
}

}  // namespace

void run_grpo(const GrpoOptions& o, const GrpoRunInfo& info) {
  const StopSignals stop;  // from here a stop signal waits for the next step boundary
  auto run = setup(o, info);
  const int kill_signal = signal_from_name(o.kill_signal, "kill-signal");
  if (run->held_out.acts && run->start_step == 0) evaluate(*run, 0);

  run::StepClock clock("grpo", run->start_step, o.steps);
  for (int64_t step = run->start_step; step < o.steps; ++step) {
    clock.begin_step();
    const auto rows = step_rows(run->in.n_rows, o.activations_per_step, o.seed, step);
    const std::string what = "step " + std::to_string(step + 1);

    // generate: K samples per activation from the current policy (rollout ranks)
    int64_t generated_tokens = 0;
    auto batch = clock.time("generate", [&] {
      const uint64_t seed = mix_seeds(static_cast<uint64_t>(o.seed), static_cast<uint64_t>(step) + 1);
      return generate(*run, run->rollout_av ? &*run->rollout_av : nullptr, *run->acts, rows, seed, what,
                      &generated_tokens);
    });

    // score: reward = -(the AR's objective) of each sample that closed its tag (reward ranks)
    clock.time("score", [&] { score(*run, batch, *run->acts, what); });

    // update: the AV on the step's samples, then (every ar_refresh_every steps) the AR (trainers)
    UpdateSums sums;
    bool ar_refreshed = false;
    clock.time("update", [&] {
      sums = update_av(*run, batch);
      ar_refreshed = refresh_ar(*run, batch, step, sums);
    });

    // sync: the new AV to the rollout ranks; the new AR to the reward ranks when it changed
    clock.time("sync", [&] {
      sync_av(*run);
      if (ar_refreshed) sync_ar(*run);
    });

    // metrics: metrics.jsonl and the progress line (rank 0)
    if (run->rank == 0) {
      const auto stats = sample_stats(batch);
      const double tokens_per_s = static_cast<double>(generated_tokens) / std::max(clock.seconds("generate"), 1e-9);
      const auto record = step_record(*run, step + 1, stats, sums, ar_refreshed, tokens_per_s, clock);
      run->metrics.write(record);
      clock.end_step(step + 1, step_line(record, stats, clock));
    }

    // eval: the held-out paired gain (--eval-store), every eval_every steps and after the last
    const bool last = step + 1 == o.steps;
    if (run->held_out.acts && (last || (o.eval_every > 0 && (step + 1) % o.eval_every == 0))) evaluate(*run, step + 1);

    // checkpoint and stop: every checkpoint_every steps, after the last, or on a stop signal
    const bool saved = last || (o.checkpoint_every > 0 && (step + 1) % o.checkpoint_every == 0);
    if (saved) save_checkpoint(*run, step + 1);
    end_of_step(stop, MPI_COMM_WORLD,
                {.command = "grpo", .step = step + 1, .steps = o.steps, .saved = saved,
                 .save = [&] { save_checkpoint(*run, step + 1); }, .saved_to = o.out + " (av/, ar/, trainer_state/)",
                 .before_kill = [&] { run->metrics.flush(); }, .kill_after_steps = o.kill_after_steps,
                 .kill_signal = kill_signal});
  }
  clock.finish();
  if (run->start_step >= o.steps)
    log_info("grpo: %s already holds all %lld steps", o.out.c_str(), static_cast<long long>(o.steps));
  run->world.barrier();
  log_info("grpo: done: %s/av, %s/ar, %s/metrics.jsonl", o.out.c_str(), o.out.c_str(), o.out.c_str());
}

}  // namespace nla::grpo
