// `nla grpo`: RL of the verbalizer (AV) against a live reconstructor (AR) (DESIGN sections
// 1 and 6). Read top to bottom in grpo.cpp:
//
//   roles        world -> trainer / rollout / reward groups (roles.hpp, --layout)
//   models       trainers: sharded AV (policy), sharded frozen SFT AV (reference), sharded
//                AR, one ShardedAdamW each for AV and AR; rollout ranks: a plain AV;
//                reward ranks: a plain AR (weights from the trainers, weight_sync.hpp)
//   resume       trainer_state/ (step, AR refresh buffer, optimizer shards = the weights)
//   step loop    activations of step s = f(seed, s)
//                generate  rollout ranks: K samples per activation (seed f(seed, s, row, j))
//                score     reward ranks: reward = -mse_nrm(AR(description), h), failed -2
//                update    trainers: advantages, log-probs recomputed (policy and reference),
//                          clipped-ratio + KL (k3 or k1) loss, each sample's token mean then
//                          the mean over samples (or the token mean), AdamW (0.9, 0.95);
//                          every ar_refresh_every steps ar_refresh_steps AR updates on the
//                          successful (explanation, activation) pairs since the last refresh
//                sync      new AV to the rollout ranks, new AR to the reward ranks
//                metrics   metrics.jsonl + one step line; checkpoints every N steps
//                eval      (--eval-store) the policy and the SFT AV on the same held-out
//                          activations and sampling seeds, scored by the current AR: the
//                          paired reward gain over SFT in eval.jsonl
//                stop      a stop signal on any rank: every rank checkpoints and stops here
//
// Everything random is a function of (seed, step, row, j) and every reduction divides by
// global counts, so the run is the same on any layout with the same trainer group size,
// and resumes exactly after a kill (on the same rank count; on another the sums regroup
// and agree to fp32 rounding).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace nla::grpo {

struct GrpoOptions {
  // inputs and outputs
  std::string store;       // activation store (nla extract)
  int64_t layer = -1;      // store layer (-1: the AV's critic.extraction_layer_index)
  std::string av;          // SFT AV checkpoint: the initial policy and the KL reference
  std::string ar;          // AR checkpoint (nla train-ar): the reward model, trained on
  std::string tokenizer;   // "" = the AV's
  std::string out;         // run directory: config.ini, provenance.json, metrics.jsonl, eval.jsonl, av/, ar/, trainer_state/
  // device and precision (nla/dist/device.hpp): the trainers compute in the precision (fp32
  // master weights), the rollout AV generates in it, the reward AR scores in fp32
  std::string device = "auto";
  std::string precision = "auto";
  bool deterministic = false;          // deterministic algorithms only (bit-identical resumes on a GPU)
  // ranks
  std::string layout = "colocate";  // colocate | split
  int trainer_ranks = 1, rollout_ranks = 1, reward_ranks = 1;  // split only
  // schedule
  int64_t steps = 100;
  int64_t activations_per_step = 16;   // N
  int64_t samples_per_activation = 4;  // K (DESIGN: 4)
  int64_t seed = 0;
  // rollouts
  double temperature = 1.0;
  double top_p = 1.0;
  int64_t max_new_tokens = 150;        // DESIGN: at most 150
  int64_t rollout_batch = 8;           // activations per generation chunk (K sequences each)
  int64_t score_batch = 32;            // samples per AR scoring chunk
  int64_t ar_max_tokens = 300;         // AR inputs keep their last N tokens (successful samples have <= 300)
  // AV update
  double lr = 1e-5;
  double weight_decay = 0.0;
  double grad_clip = 1.0;              // 0: off
  double clip_eps = 0.2;
  double kl_coef = 0.01;
  std::string kl_estimator = "k3";     // k3 (pulls toward the SFT AV) | k1 (the authors' stack: inert in expectation)
  std::string loss_aggregation = "sequence";  // sequence (each sample's token mean, then the mean: the authors') | token
  bool advantage_std = true;           // divide advantages by the group's std
  int64_t ppo_epochs = 1;              // optimizer steps on each step's rollouts
  bool freeze_embeddings = false;      // the AV's token embedding (and tied LM head) is not trained
  int64_t train_batch = 8;             // micro-batch rows per trainer rank
  // AR refresh
  int64_t ar_refresh_every = 1;        // 1: every step (the authors); 10: the seed's schedule; 0: frozen AR
  int64_t ar_refresh_steps = 1;        // AR optimizer steps per refresh
  int64_t ar_batch = 0;                // pairs per AR step (global); 0: every successful sample since the
                                       // last refresh (the authors': all of the step's)
  int64_t ar_micro_batch = 16;         // AR rows per forward on one trainer rank (accumulated)
  double ar_lr = 1e-5;
  // held-out evaluation (eval.jsonl): K samples per activation from the policy and from the
  // SFT AV, the same activations and sampling seeds, scored by the current AR
  std::string eval_store;              // "": no evaluation
  int64_t eval_rows = 64;              // activations drawn from eval_store (seeded)
  int64_t eval_every = 0;              // also every N steps; always before step 1 and after the last
  // operation
  int64_t checkpoint_every = 50;       // 0: only at the end
  int64_t sync_bucket_mb = 64;
  int64_t kill_after_steps = -1;       // testing: rank 0 raises kill_signal after this step
  std::string kill_signal = "KILL";    // KILL (dies at once) | TERM | INT | USR1 (a graceful stop)
};

struct GrpoRunInfo {
  // Called on world rank 0 once inputs are validated and before the first step (the CLI
  // writes config.ini and provenance.json there).
  std::function<void()> on_start;
};

// Collective over MPI_COMM_WORLD. InputError for bad options or inputs (one line).
// SIGTERM, SIGINT or SIGUSR1 on any rank: every rank stops after the same step, the
// checkpoint of that step is written (av/, ar/, trainer_state/) and StoppedBySignal is
// thrown on every rank (nla/core/stop_signal.hpp).
void run_grpo(const GrpoOptions& options, const GrpoRunInfo& info = {});

}  // namespace nla::grpo
