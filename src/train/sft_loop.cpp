// The SFT loop, the same for the AR and the AV (the task says what is trained): resume,
// then each step a global batch of rows split over the ranks, one optimizer step,
// validation every eval_every steps, trainer_state/ every save_every steps; at the end the
// checkpoint. Rows, the learning rate and every draw are functions of (seed, step).
#include <ATen/ATen.h>

#include <cmath>
#include <cstdio>
#include <fstream>

#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/core/log.hpp"
#include "nla/core/world.hpp"
#include "nla/run/metrics_log.hpp"
#include "nla/run/step_clock.hpp"
#include "nla/run/trainer_state.hpp"
#include "sft_internal.hpp"

namespace nla::train {

namespace {

// The step's loss over every rank; a non-finite one stops the run (every rank) before the
// optimizer sees it.
void check_finite_loss(const SftTask& task, double loss, int64_t step, const std::vector<int64_t>& rows,
                       int64_t first_step) {
  if (std::isfinite(loss)) return;
  std::string listed;
  for (int64_t row : rows) listed += (listed.empty() ? "" : ",") + std::to_string(row);
  Error error(str(task.command(), ": non-finite loss at step ", step, " (sample rows ", listed,
                  "); the last trainer_state/ (step ", first_step, " or the last save) is kept"),
              __FILE__, __LINE__);
  error.set_on_all_ranks(true);
  throw error;
}

// One global batch: this rank's share in micro-batches, gradients accumulated; returns the
// batch's loss over every rank. Every rank runs the same number of collective passes: an
// empty part runs one row with weight zero.
double accumulate_batch(const SftOptions& o, const SftData& data, SftTask& task, const dist::Communicator& comm,
                        const std::vector<int64_t>& rows) {
  const double total_weight = task.weight(rows);
  const auto mine = share_of(rows, comm.rank(), comm.size());
  const int64_t per_rank = (o.batch + comm.size() - 1) / comm.size();
  const int64_t micro_batches = o.micro_batch > 0 ? (per_rank + o.micro_batch - 1) / o.micro_batch : 1;
  double local_loss = 0;
  for (int64_t m = 0; m < micro_batches; ++m) {
    auto part = share_of(mine, static_cast<int>(m), static_cast<int>(micro_batches));
    if (part.empty()) task.accumulate({data.split.train.front()}, 0.0);
    else local_loss += task.accumulate(part, 1.0 / total_weight).first;
  }
  return comm.all_reduce_scalar(local_loss) / total_weight;
}

}  // namespace

SftResult run_sft(const SftOptions& o, const SftData& data, SftTask& task, const dist::Communicator& comm,
                  const std::string& checkpoint, const StopSignals& stop) {
  SftResult result;
  result.var_nrm = data.var_nrm;
  result.injection_scale = data.injection_scale;
  result.checkpoint = checkpoint;

  // ---- run directory and resume -----------------------------------------------------------
  run_on_root(comm.mpi_comm(), [&] {
    fs::create_directories(o.out);
    NLA_CHECK_INPUT(std::ofstream(o.out + "/metrics.jsonl", std::ios::app).good(), o.out,
                    "/metrics.jsonl: cannot be written");
  });
  const run::NamedOptimizers optimizers = {{"model", &task.optimizer()}};
  run::Fingerprint fingerprint;
  fingerprint.set("command", task.command()).set("seed", o.seed).set("batch", o.batch);
  fingerprint.set_since("freeze_embeddings", o.freeze_embeddings, false);
  task.add_to_fingerprint(fingerprint);
  auto state = run::load_trainer_state(o.out, optimizers, comm);
  if (state) fingerprint.check(state->extra, o.out + "/trainer_state/state.json");
  const int64_t first_step = state ? state->step : 0;
  result.first_step = first_step;
  run::MetricsLog metrics(o.out + "/metrics.jsonl", state ? std::optional<int64_t>(first_step) : std::nullopt,
                          comm.mpi_comm());

  auto validate = [&](int64_t step) {
    auto eval = task.validate(step);
    nlohmann::json record = {{"step", step}, {"split", "validation"}, {"loss", eval.loss}, {"n", data.eval_rows.size()}};
    record.update(task.validation_fields(eval));
    metrics.write(record);
    result.evals.push_back(eval);
  };
  auto save_state = [&](int64_t step) { run::save_trainer_state(o.out, {step, fingerprint.json()}, optimizers, comm); };

  if (state)
    log_info("%s: resumed from %s/trainer_state at step %lld", task.command(), o.out.c_str(),
             static_cast<long long>(first_step));
  else
    validate(0);

  // ---- steps ------------------------------------------------------------------------------
  const int kill_signal = signal_from_name(o.kill_signal, "kill-signal");
  run::StepClock clock(task.command(), first_step, o.steps);
  for (int64_t step = first_step; step < o.steps; ++step) {
    clock.begin_step();
    const double lr = lr_at(step, o.steps, o.lr_max, o.lr_min, o.lr_warmup_steps);
    const auto rows = step_rows(data.split.train, o.batch, step, o.seed);

    // forward and backward over the ranks' shares, then one optimizer step
    task.sharded().zero_grad();
    const double loss = accumulate_batch(o, data, task, comm, rows);
    check_finite_loss(task, loss, step, rows, first_step);
    const double grad_norm =
        o.grad_clip > 0 ? task.sharded().clip_grad_norm(o.grad_clip) : task.sharded().grad_norm();
    task.optimizer().step(lr);

    // metrics and the progress line
    const double step_ms = 1000.0 * clock.step_seconds();
    result.losses.push_back(loss);
    metrics.write({{"step", step + 1}, {"split", "train"}, {"loss", loss}, {"lr", lr}, {"grad_norm", grad_norm},
                   {"ms", step_ms}, {"rows", o.batch}, {"ranks", comm.size()}});
    char extra[160];
    std::snprintf(extra, sizeof extra, "loss %.4f | lr %.2e | grad norm %.3f | %.0f ms", loss, lr, grad_norm, step_ms);
    clock.end_step(step + 1, extra);

    // validation, trainer_state/, and a stop signal's checkpoint
    const bool last = step + 1 == o.steps;
    if (last || (o.eval_every > 0 && (step + 1) % o.eval_every == 0)) validate(step + 1);
    const bool saved = !last && o.save_every > 0 && (step + 1) % o.save_every == 0;
    if (saved) save_state(step + 1);
    end_of_step(stop, comm.mpi_comm(),
                {.command = task.command(), .step = step + 1, .steps = o.steps, .saved = saved,
                 .save = [&] { save_state(step + 1); }, .saved_to = o.out + "/trainer_state", .before_kill = {},
                 .kill_after_steps = o.kill_after_steps, .kill_signal = kill_signal});
  }
  clock.finish();

  // ---- checkpoint ---------------------------------------------------------------------------
  task.save_checkpoint(result.checkpoint);
  save_state(o.steps);
  log_info("%s: checkpoint -> %s", task.command(), result.checkpoint.c_str());
  return result;
}

}  // namespace nla::train
