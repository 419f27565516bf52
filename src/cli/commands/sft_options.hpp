// The options `nla train-ar` and `nla train-av` share (each in its own INI section).
#pragma once

#include <string>

#include "device_options.hpp"
#include "nla/cli/options.hpp"
#include "nla/train/sft.hpp"

namespace nla::cli {

inline void declare_sft_options(OptionSet& options, const std::string& section, train::SftOptions& o) {
  const bool ar = section == "train-ar";
  options.add(section, "store", &o.store, "activation store with descriptions (nla extract + nla label)");
  options.add(section, "layer", &o.layer,
              ar ? "layer L: the AR is blocks 0..L of the model, trained on layer L"
                 : "layer L: the activations injected into the AV");
  options.add(section, "model", &o.model, "base checkpoint directory");
  options.add(section, "tokenizer", &o.tokenizer, "tokenizer.json or its directory (\"\": the model's)");
  options.add(section, "descriptions", &o.descriptions,
              "descriptions in the store: /descriptions/<name> (empty entries are skipped)");
  options.add(section, "out", &o.out,
              ar ? "run directory: config.ini, provenance.json, metrics.jsonl, ar/, trainer_state/"
                 : "run directory: config.ini, provenance.json, metrics.jsonl, av/, trainer_state/");
  declare_device_options(options, section, o.device, o.precision);
  options.add(section, "deterministic", &o.deterministic, dist::kDeterministicHelp);
  options.add(section, "steps", &o.steps, "optimizer steps");
  options.add(section, "batch", &o.batch, "rows per optimizer step over all ranks (results do not depend on the rank count)");
  options.add(section, "micro-batch", &o.micro_batch,
              "rows per forward on one rank; more are accumulated (0: the rank's whole share at once)");
  options.add(section, "lr-max", &o.lr_max, "peak learning rate (after warmup)");
  options.add(section, "lr-min", &o.lr_min, "learning rate at the end of the cosine decay");
  options.add(section, "lr-warmup-steps", &o.lr_warmup_steps, "linear warmup steps");
  options.add(section, "weight-decay", &o.weight_decay, "AdamW weight decay");
  options.add(section, "grad-clip", &o.grad_clip, "clip the global gradient norm to this (0: off)");
  options.add(section, "eval-every", &o.eval_every, "validation every N steps (0: start and end only)");
  options.add(section, "max-eval-samples", &o.max_eval_samples, "validation rows evaluated at most");
  options.add(section, "save-every", &o.save_every, "write trainer_state/ every N steps (0: at the end only)");
  options.add(section, "per-block", &o.per_block,
              "FSDP: gather one block at a time and recompute it in backward (memory) instead of all at once");
  if (!ar)
    options.add(section, "freeze-embeddings", &o.freeze_embeddings,
                "keep the token embedding (and a tied LM head) as loaded: the injected activations live in "
                "its geometry, which Adam would move for every vocabulary row (see docs/demo.md)");
  if (!ar)
    options.add(section, "loss-aggregation", &o.loss_aggregation,
                "sequence: mean NLL over each answer's tokens, then over the answers (the authors') | token: "
                "sum over every answer token / the batch's tokens (nla before 2026-12)");
  if (ar)
    options.add(section, "ar-target", &o.ar_target,
                "normalized: predict the direction, mse_nrm (the authors') | raw: predict the activation, MSE "
                "against it (the reproduction's; the loss is divided by var_raw, so the mean predictor scores 1)");
  options.add(section, "max-tokens", &o.max_tokens,
              ar ? "AR inputs keep their last N tokens" : "answers are cut to their first N tokens");
  options.add(section, "validation-fraction", &o.validation_fraction, "fraction of documents held out");
  options.add(section, "injection-scale", &o.injection_scale,
              "norm s of the injected vector, recorded in nla_meta.yaml (0: the mean norm, rounded up)");
  options.add(section, "seed", &o.seed, "seed of the split and the data order");
  options.add(section, "kill-after-steps", &o.kill_after_steps, "tests: rank 0 raises kill-signal after N steps (-1: off)");
  options.add(section, "kill-signal", &o.kill_signal,
              "tests: KILL (dies at once) | TERM | INT | USR1 (the graceful stop a scheduler's signal gives)");
}

}  // namespace nla::cli
