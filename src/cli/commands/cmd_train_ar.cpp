// nla train-ar: AR SFT (descriptions -> activations of layer L) on an activation store.
#include <filesystem>

#include "nla/cli/command.hpp"
#include "nla/core/error.hpp"
#include "nla/core/log.hpp"
#include "nla/core/world.hpp"
#include "nla/nla/train_ar.hpp"

namespace nla::cli {

class TrainArCommand : public Command {
 public:
  std::string name() const override { return "train-ar"; }
  std::string summary() const override {
    return "SFT of the activation reconstructor (AR) on an activation store's descriptions";
  }

  void declare(OptionSet& options) override {
    options.add("train-ar", "store", &o_.store, "activation store with descriptions (nla extract + nla label)");
    options.add("train-ar", "layer", &o_.layer, "layer L: the AR is blocks 0..L of the model, trained on layer L");
    options.add("train-ar", "model", &o_.model, "base checkpoint directory");
    options.add("train-ar", "tokenizer", &o_.tokenizer, "tokenizer.json or its directory (\"\": the model's)");
    options.add("train-ar", "descriptions", &o_.descriptions, "descriptions in the store: /descriptions/<name>");
    options.add("train-ar", "out", &o_.out, "run directory: config.ini, provenance.json, metrics.jsonl, ar/");
    options.add("train-ar", "device", &o_.device, "cpu | cuda | cuda:N");
    options.add("train-ar", "steps", &o_.steps, "optimizer steps");
    options.add("train-ar", "batch", &o_.batch, "micro-batch size (samples)");
    options.add("train-ar", "grad-accum", &o_.grad_accum, "micro-batches per optimizer step");
    options.add("train-ar", "lr-max", &o_.lr_max, "peak learning rate (after warmup)");
    options.add("train-ar", "lr-min", &o_.lr_min, "learning rate at the end of the cosine decay");
    options.add("train-ar", "lr-warmup-steps", &o_.lr_warmup_steps, "linear warmup steps");
    options.add("train-ar", "weight-decay", &o_.weight_decay, "AdamW weight decay");
    options.add("train-ar", "grad-clip", &o_.grad_clip, "clip the global gradient norm to this (0: off)");
    options.add("train-ar", "eval-every", &o_.eval_every, "validation every N steps (0: start and end only)");
    options.add("train-ar", "max-eval-samples", &o_.max_eval_samples, "validation rows evaluated at most");
    options.add("train-ar", "max-tokens", &o_.max_tokens, "AR inputs keep their last N tokens");
    options.add("train-ar", "validation-fraction", &o_.validation_fraction, "fraction of documents held out");
    options.add("train-ar", "injection-scale", &o_.injection_scale,
                "norm s recorded in nla_meta.yaml (0: the mean norm, rounded up)");
    options.add("train-ar", "seed", &o_.seed, "seed of the split and the data order");
  }

  void run(const RunContext& context) override {
    // Single process for now: rank 0 trains, other ranks wait (FSDP arrives with src/dist/).
    run_on_root(MPI_COMM_WORLD, [&] {
      NLA_CHECK_INPUT(!o_.out.empty(), "option 'out': expected a run directory");
      std::filesystem::create_directories(o_.out);
      context.announce();
      context.save_to_directory(o_.out);
      auto result = autoencoder::train_ar(o_);
      const auto& first = result.evals.front();
      const auto& last = result.evals.back();
      log_info("train-ar: val fve_nrm %.4f -> %.4f (mean baseline %.4f), loss %.4f -> %.4f", first.fve_nrm,
               last.fve_nrm, last.baseline_fve_nrm, result.losses.front(), result.losses.back());
    });
  }

 private:
  autoencoder::ArTrainOptions o_;
};

std::unique_ptr<Command> make_train_ar_command() { return std::make_unique<TrainArCommand>(); }

}  // namespace nla::cli
