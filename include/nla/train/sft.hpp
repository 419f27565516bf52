// Supervised training of the AR (`nla train-ar`) and the AV (`nla train-av`) on an
// activation store's descriptions, sharded FSDP-style over the ranks of the job.
//
// One loop for both (sft.cpp): options -> data split by document -> model sharded over
// the ranks -> resume from <out>/trainer_state when present -> steps (validation every N,
// then the step's global batch split over ranks and micro-batches, gradients summed,
// global-norm clipping, sharded AdamW with warmup + cosine) -> trainer_state every
// save_every steps -> the checkpoint (DESIGN section 3) at the end. A stop signal (SIGTERM,
// SIGINT, SIGUSR1) ends the run at the next step boundary with trainer_state saved there.
//
// Rank-count independence: step s trains on a global batch of `batch` rows that depends
// only on (seed, s); each rank takes a contiguous part of it; the loss is a sum over rows
// divided by the global count (AR: rows; AV: answer tokens), so the update is the same on
// any number of ranks up to float summation order. Resume reads the step from
// trainer_state/ and continues with the same batches, on any rank count.
//
//   AR: loss = mean over rows of mse_nrm(AR(description), h)     (validation: fve_nrm vs
//       the mean-direction baseline)
//   AV: loss = mean over answer tokens of -log p(token)         (validation: the same loss)
//       input = AV prompt with h * s / |h| at the marker + "<explanation>...</explanation>"
//       + <|im_end|>; only the answer tokens count.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace nla::train {

struct SftOptions {
  std::string store;                 // activation store with /descriptions/<descriptions>
  int64_t layer = -1;                // layer L of the store (and the AR's depth)
  std::string model;                 // base checkpoint directory (or an AV/AR to continue)
  std::string tokenizer;             // "" = the model's
  std::string descriptions = "gold"; // /descriptions/<name>
  std::string out;                   // run directory: metrics.jsonl, ar/ or av/, trainer_state/
  std::string device = "auto";       // auto | cpu | cuda | cuda:N (nla/dist/device.hpp)
  std::string precision = "auto";    // auto (bf16 compute on GPU, fp32 on CPU) | fp32 | bf16
  bool deterministic = false;        // deterministic algorithms only (dist::use_deterministic_algorithms)
  int64_t steps = 200;
  int64_t batch = 16;                // rows per optimizer step, over all ranks
  int64_t micro_batch = 0;           // rows per forward on one rank (0: the rank's whole share)
  double lr_max = 1e-4;
  double lr_min = 1e-5;
  int64_t lr_warmup_steps = 10;
  double weight_decay = 0.0;
  double grad_clip = 1.0;            // global gradient norm (0: off)
  int64_t eval_every = 50;           // 0: only at the start and the end
  int64_t max_eval_samples = 512;
  int64_t save_every = 0;            // trainer_state/ every N steps (0: at the end only)
  bool per_block = false;            // FSDP per-block gathering with recomputation
  bool freeze_embeddings = false;    // AV: the token embedding (and a tied LM head) is not trained
  std::string loss_aggregation = "sequence";  // AV: sequence (each answer's token mean, then the mean
                                              // over answers: the authors') | token (sum / tokens)
  std::string ar_target = "normalized";  // AR: normalized (mse_nrm on directions, the authors') | raw
                                         // (MSE against the raw activation / var_raw, the reproduction's)
  int64_t max_tokens = 256;          // AR inputs keep their last N tokens; AV answers are cut to N
  double validation_fraction = 0.1;  // of the documents
  double injection_scale = 0;        // s; 0 = the training rows' mean norm, rounded up
  int64_t seed = 0;
  int64_t kill_after_steps = -1;     // tests: rank 0 raises kill_signal after this many steps
  std::string kill_signal = "KILL";  // KILL (dies at once) | TERM | INT | USR1 (a graceful stop)
};

struct SftEval {
  int64_t step = 0;
  double loss = 0;                                    // AR: its objective (mse_nrm or mse / var_raw); AV: token-mean NLL
  double mse_nrm = 0, fve_nrm = 0;                    // AR only (whatever its target: the direction's error)
  double baseline_mse_nrm = 0, baseline_fve_nrm = 0;  // AR only: the mean direction
  double fve = 0, baseline_fve = 0;                   // AR with a raw target: 1 - loss; the mean row's
  // AV only: the same answers with every row's activation swapped for another row's (a
  // fixed derangement). loss_shuffled - loss is what the injected vector is worth in nats per
  // token: about 0 means the AV ignores it and writes one description for every vector.
  double loss_shuffled = 0;
};

struct SftResult {
  std::vector<double> losses;  // training loss per step run in this process
  std::vector<SftEval> evals;  // validations run in this process
  int64_t first_step = 0;      // 0, or the step resumed from
  double var_nrm = 0;
  double injection_scale = 0;
  std::string checkpoint;      // <out>/ar or <out>/av
};

struct SftData;  // sft.cpp: the open store, its descriptions, the split, the statistics

// The inputs of one run, checked and read once by check_sft_inputs (opaque to callers).
struct SftInputs {
  std::shared_ptr<const SftData> data;
  std::string command;  // "train-ar" | "train-av"
};

// Checks the inputs (store, layer, descriptions, model width and depth, tokenizer, device
// kind) on rank 0, so bad input is one line with exit 2, then every rank reads the store's
// split and statistics once. Collective over MPI_COMM_WORLD. Commands call it before they
// announce their config and hand the result to train_ar / train_av.
SftInputs check_sft_inputs(const SftOptions& options, const char* command);

// Collective over MPI_COMM_WORLD. `inputs` from check_sft_inputs with the same options and
// command. InputError (raised on every rank) for bad options or input; Error for a
// non-finite loss, naming the step and the sample rows (the last trainer_state/ stays as it
// was). SIGTERM, SIGINT or SIGUSR1 on any rank: every rank stops after the same step,
// trainer_state/ is saved for it, and StoppedBySignal is thrown on every rank
// (nla/core/stop_signal.hpp).
SftResult train_ar(const SftOptions& options, const SftInputs& inputs);
SftResult train_av(const SftOptions& options, const SftInputs& inputs);

// Train/validation split by document (a document's rows all go to one side), deterministic
// in (document index, seed). Returns rows.
struct RowSplit {
  std::vector<int64_t> train, validation;
};
RowSplit split_by_document(const std::vector<int64_t>& row_documents, double validation_fraction, int64_t seed);

// The learning rate of optimizer step `step` (0-based): linear warmup to lr_max over
// lr_warmup_steps, then cosine decay to lr_min at the last step.
double lr_at(int64_t step, int64_t steps, double lr_max, double lr_min, int64_t lr_warmup_steps);

// The rows of global step `step`: `batch` rows of `train` in epochs of seeded shuffles
// (epoch e is shuffled with (seed, e)); a pure function, so resume needs only the step.
std::vector<int64_t> step_rows(const std::vector<int64_t>& train, int64_t batch, int64_t step, int64_t seed);

}  // namespace nla::train
