// AR supervised training (`nla train-ar`): descriptions from the activation store -> the
// activations of layer L, minimising mse_nrm.
//
// Read top to bottom in train_ar.cpp: options -> data split by document -> AR from the base
// model -> step loop (eval every N steps, then grad_accum micro-batches, clip, AdamW with a
// cosine schedule) -> AR checkpoint. Single process and unsharded: the loop touches the
// parameters only through Reconstructor::parameters() and ArTrainHooks, so the FSDP layer
// (src/dist/) can be applied from outside (shard the parameter list, reduce-scatter in the
// hook) without changing the model or the loop.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace nla::autoencoder {

struct ArTrainOptions {
  std::string store;                 // activation store (with /descriptions/<descriptions>)
  int64_t layer = -1;                // layer L (output of block L) in the store and the model
  std::string model;                 // base checkpoint directory
  std::string tokenizer;             // "" = the model's
  std::string descriptions = "gold"; // /descriptions/<name>
  std::string out;                   // run directory: metrics.jsonl, ar/
  std::string device = "cpu";
  int64_t steps = 200;
  int64_t batch = 16;                // micro-batch size
  int64_t grad_accum = 1;            // micro-batches per optimizer step
  double lr_max = 1e-4;
  double lr_min = 1e-5;
  int64_t lr_warmup_steps = 10;
  double weight_decay = 0.0;
  double grad_clip = 1.0;            // global gradient norm (0: off)
  int64_t eval_every = 50;           // 0: only at the start and the end
  int64_t max_eval_samples = 512;
  int64_t max_tokens = 256;          // AR inputs keep their last max_tokens tokens
  double validation_fraction = 0.1;  // of the documents
  double injection_scale = 0;        // recorded in nla_meta.yaml; 0 = mean norm rounded up
  int64_t seed = 0;
};

// Train/validation split by document (a document's rows all go to one side), deterministic
// in (document index, seed). Returns rows.
struct RowSplit {
  std::vector<int64_t> train, validation;
};
RowSplit split_by_document(const std::vector<int64_t>& row_documents, double validation_fraction, int64_t seed);

// The learning rate of optimizer step `step` (0-based): linear warmup to lr_max over
// lr_warmup_steps, then cosine decay to lr_min at the last step.
double lr_at(int64_t step, int64_t steps, double lr_max, double lr_min, int64_t lr_warmup_steps);

struct ArEval {
  int64_t step = 0;
  double mse_nrm = 0, fve_nrm = 0;                    // the AR on the validation rows
  double baseline_mse_nrm = 0, baseline_fve_nrm = 0;  // the training mean as prediction
};

struct ArTrainResult {
  std::vector<double> losses;  // training mse_nrm per optimizer step
  std::vector<ArEval> evals;   // first one before any update
  double var_nrm = 0;
  std::string checkpoint;      // <out>/ar
};

// Where a sharding layer plugs in: called after each step's backward passes with every
// trainable parameter (gradients filled), before clipping and the update. Unsharded: unset.
struct ArTrainHooks {
  std::function<void(std::vector<at::Tensor>& parameters)> after_backward;
};

// Runs the whole training (rank 0 speaks). `provenance` (run directory files) is written
// by the caller. InputError for bad options or input; Error for a non-finite loss (naming
// the step and the sample rows).
ArTrainResult train_ar(const ArTrainOptions& options, const ArTrainHooks& hooks = {});

}  // namespace nla::autoencoder
