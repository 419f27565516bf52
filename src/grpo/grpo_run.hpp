// The state of one `nla grpo` run and its phases (private to src/grpo/). setup() builds
// the state; run_grpo() (grpo.cpp) is the loop that calls the phases in order:
//
//   setup.cpp      validate the options and inputs, roles, models, resume, run logs
//   samples.cpp    a step's rows, what a set of samples scored, the paired gain
//   rollout.cpp    generate: K samples per activation on the rollout ranks
//   reward.cpp     score: the AR's error of each sample on the reward ranks
//   update.cpp     update_av (the GRPO step) and refresh_ar (the AR on the policy's pairs)
//   sync.cpp       sync_av / sync_ar: new weights to the rollout / reward ranks
//   evaluate.cpp   the held-out evaluation (eval.jsonl)
//   checkpoint.cpp av/, ar/ and trainer_state/ of a finished step
#pragma once

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nla/autoencoder/checkpoint.hpp"
#include "nla/autoencoder/losses.hpp"
#include "nla/autoencoder/prompts.hpp"
#include "nla/autoencoder/reconstructor.hpp"
#include "nla/autoencoder/sharded.hpp"
#include "nla/dist/adamw.hpp"
#include "nla/dist/communicator.hpp"
#include "nla/grpo/grpo.hpp"
#include "nla/grpo/loss.hpp"
#include "nla/grpo/roles.hpp"
#include "nla/grpo/weight_sync.hpp"
#include "nla/model/qwen2.hpp"
#include "nla/run/fingerprint.hpp"
#include "nla/run/metrics_log.hpp"
#include "nla/run/trainer_state.hpp"
#include "nla/store/activation_store.hpp"
#include "nla/tokenizer/tokenizer.hpp"

namespace nla::grpo {

inline constexpr double kFailedReward = -2.0;  // DESIGN: a sample that does not close its tag
inline constexpr int64_t kMaxNewTokens = 150;  // DESIGN: rollouts cap the answer at 150 tokens

// ---- samples (samples.cpp) ---------------------------------------------------------------

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
  nlohmann::json to_json(double var_nrm, autoencoder::ArTarget target) const;
};
SampleStats sample_stats(const std::vector<Sample>& batch);

// Mean over activations of (policy's mean reward - SFT AV's mean reward) and its standard
// error: both batches hold K samples of the same activations, in the same order.
struct PairedGain {
  double mean = 0, standard_error = 0;
};
PairedGain paired_gain(const std::vector<Sample>& policy, const std::vector<Sample>& sft, int64_t k);

// The N distinct store rows of step `step`: a function of (seed, step) only.
std::vector<int64_t> step_rows(int64_t n_rows, int64_t count, int64_t seed, int64_t step);

// An (explanation, activation row) pair the AR trains on.
struct ArPair {
  int64_t row = 0;
  std::string explanation;
};
nlohmann::json pairs_to_json(const std::vector<ArPair>& pairs);
std::vector<ArPair> pairs_from_json(const nlohmann::json& json);

// ---- the run's state ---------------------------------------------------------------------

// What validate() reads from the inputs (rank 0, then broadcast).
struct Inputs {
  int layer = -1;
  autoencoder::NlaMeta av_meta, ar_meta;
  int64_t n_rows = 0;
  double var_nrm = 0;
  autoencoder::ArObjective objective;  // the AR's target: what it is refreshed on and the reward
};

// The held-out evaluation's fixed part (--eval-store).
struct HeldOut {
  std::optional<store::ActivationStore> acts;
  std::vector<int64_t> rows;
  std::vector<Sample> sft_samples;  // the SFT AV does not change: sampled once, re-scored each time
  uint64_t seed = 0;
  run::MetricsLog log;  // eval.jsonl
};

struct GrpoRun {
  const GrpoOptions& o;
  // roles
  dist::Communicator world;
  int rank = 0;
  RoleLayout layout;
  RoleGroups groups;
  bool is_trainer = false, is_rollout = false, is_reward = false;
  Inputs in;
  int64_t k = 0;  // samples per activation
  // data and prompts
  c10::Device device = c10::kCPU;
  model::LoadOptions load, rollout_load;  // fp32 (trainers, reward AR); the rollout AVs' precision
  std::optional<store::ActivationStore> acts;
  std::optional<tokenizer::Tokenizer> tokenizer;
  std::string tokenizer_dir;
  autoencoder::AvPrompt prompt;
  LossOptions loss_options;
  // models: trainers hold the sharded policy, its frozen SFT reference and the AR
  std::unique_ptr<autoencoder::ShardedVerbalizer> policy, reference;
  std::unique_ptr<autoencoder::ShardedReconstructor> critic;
  std::unique_ptr<dist::ShardedAdamW> av_optimizer, ar_optimizer;
  run::NamedOptimizers optimizers;
  // rollout ranks' AV and reward ranks' AR; in split layout the weight streams to them
  std::optional<model::Qwen2Model> rollout_av;
  std::optional<autoencoder::Reconstructor> reward_ar;
  WeightStream av_stream, ar_stream;
  // the run
  run::Fingerprint fingerprint;
  int64_t start_step = 0;
  std::vector<ArPair> ar_buffer;  // the freshest successful pairs since the last AR refresh
  size_t ar_buffer_capacity = 0;
  run::MetricsLog metrics;  // metrics.jsonl
  HeldOut held_out;

  explicit GrpoRun(const GrpoOptions& options) : o(options) {}
};

// What a step's update phase reports for metrics.jsonl.
struct UpdateSums {
  double loss = 0, kl = 0, clipped = 0;  // the AV's (kl of the first PPO epoch)
  double ar_error_sum = 0, ar_rows = 0;   // the AR refresh's objective, summed over its rows
  double grad_norm = 0;
  double tokens = 0;  // the step's answer tokens (global)
};

// ---- phases --------------------------------------------------------------------------------

// setup.cpp: every rank's state; InputError (one line, every rank) for bad options or inputs.
std::unique_ptr<GrpoRun> setup(const GrpoOptions& o, const GrpoRunInfo& info);

// rollout.cpp: K samples for each of `rows` of `store` from `av` (the rollout ranks' model;
// null elsewhere), in chunks dealt to the rollout ranks; every rank gets them all.
std::vector<Sample> generate(GrpoRun& run, const model::Qwen2Model* av, const store::ActivationStore& store,
                             const std::vector<int64_t>& rows, uint64_t seed, const std::string& what,
                             int64_t* generated_tokens);

// reward.cpp: sets mse_nrm, ar_loss and reward = -ar_loss of every sample that closed its
// tag, with the reward ranks' AR; every rank gets every score.
void score(GrpoRun& run, std::vector<Sample>& batch, const store::ActivationStore& store, const std::string& what);

// update.cpp: the AV's GRPO update on the step's samples (trainers), and every
// ar_refresh_every steps the AR's refresh on the successful pairs since the last one.
// Returns whether the AR was refreshed.
UpdateSums update_av(GrpoRun& run, const std::vector<Sample>& batch);
bool refresh_ar(GrpoRun& run, const std::vector<Sample>& batch, int64_t step, UpdateSums& sums);

// sync.cpp: the trainers' AV to the rollout ranks, their AR to the reward ranks.
void sync_av(GrpoRun& run);
void sync_ar(GrpoRun& run);

// evaluate.cpp: the policy against the SFT AV on the held-out rows (eval.jsonl).
void evaluate(GrpoRun& run, int64_t done_steps);

// checkpoint.cpp: av/, ar/, then trainer_state/ (last: marks the step done). Trainers only.
void save_checkpoint(GrpoRun& run, int64_t done_steps);

}  // namespace nla::grpo
