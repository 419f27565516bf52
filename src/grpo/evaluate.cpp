// GRPO's held-out evaluation (--eval-store): the policy against the SFT AV it started
// from, on the same activations with the same sampling seeds, scored by the same (current)
// AR; one eval.jsonl record with the paired reward gain.
#include <chrono>

#include "grpo_run.hpp"
#include "nla/core/fs.hpp"
#include "nla/core/log.hpp"

namespace nla::grpo {

void evaluate(GrpoRun& run, int64_t done_steps) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  HeldOut& held_out = run.held_out;
  if (held_out.sft_samples.empty()) {
    std::optional<model::Qwen2Model> sft_av;
    if (run.is_rollout) sft_av = autoencoder::load_av(run.o.av, run.rollout_load);
    held_out.sft_samples = generate(run, sft_av ? &*sft_av : nullptr, *held_out.acts, held_out.rows, held_out.seed,
                                    "eval (SFT AV)", nullptr);
  }
  std::vector<Sample> sft = held_out.sft_samples;
  score(run, sft, *held_out.acts, "eval (SFT AV)");
  std::vector<Sample> current = sft;  // before the first update the policy is the SFT AV
  if (done_steps > 0) {
    current = generate(run, run.rollout_av ? &*run.rollout_av : nullptr, *held_out.acts, held_out.rows, held_out.seed,
                       "eval", nullptr);
    score(run, current, *held_out.acts, "eval");
  }
  if (run.rank != 0) return;
  const auto policy_stats = sample_stats(current), sft_stats = sample_stats(sft);
  const auto gain = paired_gain(current, sft, run.k);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  held_out.log.write({{"step", done_steps},
                      {"rows", static_cast<int64_t>(held_out.rows.size())},
                      {"samples_per_activation", run.k},
                      {"policy", policy_stats.to_json(run.in.var_nrm, run.in.objective.target)},
                      {"sft", sft_stats.to_json(run.in.var_nrm, run.in.objective.target)},
                      {"reward_gain", gain.mean},
                      {"reward_gain_se", gain.standard_error},
                      {"seconds", seconds}});
  log_info("grpo: eval after step %lld on %zu activations of %s x %lld | reward %.4f (SFT AV %.4f, gain %.4f +- %.4f)"
           " | failed %.0f%% (SFT AV %.0f%%) | %s",
           static_cast<long long>(done_steps), held_out.rows.size(), fs::filename(run.o.eval_store).c_str(),
           static_cast<long long>(run.k), policy_stats.reward_mean, sft_stats.reward_mean, gain.mean,
           gain.standard_error, 100.0 * policy_stats.failure_rate(), 100.0 * sft_stats.failure_rate(),
           format_duration(seconds).c_str());
}

}  // namespace nla::grpo
