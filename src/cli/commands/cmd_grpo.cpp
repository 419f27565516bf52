// nla grpo: RL of the verbalizer against a live reconstructor (src/grpo/, grpo.hpp).
#include "device_options.hpp"
#include "nla/cli/command.hpp"
#include "nla/grpo/grpo.hpp"

namespace nla::cli {

class GrpoCommand : public Command {
 public:
  std::string name() const override { return "grpo"; }
  std::string summary() const override { return "GRPO of the verbalizer (AV) against a live reconstructor (AR)"; }

  void declare(OptionSet& options) override {
    const std::string s = "grpo";
    options.add(s, "store", &o_.store, "activation store (nla extract)");
    options.add(s, "layer", &o_.layer, "store layer (-1: the AV's critic.extraction_layer_index)");
    options.add(s, "av", &o_.av, "SFT AV checkpoint: the initial policy and the frozen KL reference");
    options.add(s, "ar", &o_.ar, "AR checkpoint (nla train-ar): the reward model, kept learning");
    options.add(s, "tokenizer", &o_.tokenizer, "tokenizer.json or its directory (\"\": the AV's)");
    options.add(s, "out", &o_.out, "run directory: config.ini, provenance.json, metrics.jsonl, eval.jsonl, av/, ar/, trainer_state/");
    declare_device_options(options, s, o_.device, o_.precision);
    options.add(s, "deterministic", &o_.deterministic, dist::kDeterministicHelp);
    options.add(s, "layout", &o_.layout, "colocate (every role on every rank) | split (role groups, sizes below)");
    options.add(s, "trainer-ranks", &o_.trainer_ranks, "split: ranks holding the sharded AV and AR (world ranks 0..)");
    options.add(s, "rollout-ranks", &o_.rollout_ranks, "split: ranks generating descriptions (after the trainers)");
    options.add(s, "reward-ranks", &o_.reward_ranks, "split: ranks scoring descriptions with the AR (last)");
    options.add(s, "steps", &o_.steps, "GRPO steps (one AV update each)");
    options.add(s, "activations-per-step", &o_.activations_per_step, "activations N per step (a function of seed and step)");
    options.add(s, "samples-per-activation", &o_.samples_per_activation, "descriptions K sampled per activation (the group)");
    options.add(s, "seed", &o_.seed, "seed of the activations per step and of every rollout sample");
    options.add(s, "temperature", &o_.temperature, "rollout sampling temperature (> 0)");
    options.add(s, "top-p", &o_.top_p, "rollout nucleus sampling");
    options.add(s, "max-new-tokens", &o_.max_new_tokens, "answer cap (<= 150); a sample without </explanation> fails (reward -2)");
    options.add(s, "rollout-batch", &o_.rollout_batch, "activations per generation chunk (K sequences each)");
    options.add(s, "score-batch", &o_.score_batch, "samples per AR scoring chunk");
    options.add(s, "ar-max-tokens", &o_.ar_max_tokens,
                "AR inputs keep their last N tokens (a sample whose AR input exceeds 300 tokens has failed)");
    options.add(s, "lr", &o_.lr, "AV learning rate (AdamW)");
    options.add(s, "weight-decay", &o_.weight_decay, "AdamW weight decay (AV and AR)");
    options.add(s, "grad-clip", &o_.grad_clip, "clip the global gradient norm to this (0: off)");
    options.add(s, "clip-eps", &o_.clip_eps, "ratio clip: [1 - eps, 1 + eps]");
    options.add(s, "kl-coef", &o_.kl_coef, "weight of the KL to the frozen SFT AV in the loss");
    options.add(s, "kl-estimator", &o_.kl_estimator,
                "k3: exp(ref - logp) - (ref - logp) - 1, pulls toward the SFT AV | k1: logp - ref, the authors' "
                "stack's default (its expected gradient on-policy is zero)");
    options.add(s, "loss-aggregation", &o_.loss_aggregation,
                "sequence: the loss's mean over each sample's tokens, then over the samples (the authors') | "
                "token: the sum over every token of the step / its tokens (nla before 2026-12)");
    options.add(s, "advantage-std", &o_.advantage_std, "divide advantages by the group's std (false: mean-centred only)");
    options.add(s, "ppo-epochs", &o_.ppo_epochs, "AV optimizer steps on each step's rollouts");
    options.add(s, "freeze-embeddings", &o_.freeze_embeddings,
                "keep the AV's token embedding (and a tied LM head) as loaded, as train-av --freeze-embeddings");
    options.add(s, "train-batch", &o_.train_batch, "micro-batch rows per trainer rank (memory)");
    options.add(s, "ar-refresh-every", &o_.ar_refresh_every, "AR updates every N steps (1: every step; 0: frozen AR)");
    options.add(s, "ar-refresh-steps", &o_.ar_refresh_steps, "AR optimizer steps per refresh");
    options.add(s, "ar-batch", &o_.ar_batch,
                "pairs per AR step: 0 = every successful (explanation, activation) pair since the last refresh "
                "(the authors': all of the step's); N = the freshest N");
    options.add(s, "ar-micro-batch", &o_.ar_micro_batch, "AR rows per forward on one trainer rank (memory)");
    options.add(s, "ar-lr", &o_.ar_lr, "AR learning rate (AdamW)");
    options.add(s, "eval-store", &o_.eval_store,
                "held-out activation store: the policy and the SFT AV sampled on the same activations with the same "
                "seeds, scored by the current AR; eval.jsonl (\"\": off)");
    options.add(s, "eval-rows", &o_.eval_rows, "held-out activations per evaluation (drawn once, seeded)");
    options.add(s, "eval-every", &o_.eval_every, "evaluate every N steps too (0: before step 1 and after the last only)");
    options.add(s, "checkpoint-every", &o_.checkpoint_every, "checkpoint AV, AR and trainer_state/ every N steps (0: end only)");
    options.add(s, "sync-bucket-mb", &o_.sync_bucket_mb, "split: MB per weight broadcast bucket");
    options.add(s, "kill-after-steps", &o_.kill_after_steps, "testing: rank 0 raises kill-signal after this step");
    options.add(s, "kill-signal", &o_.kill_signal,
                "testing: KILL (dies at once) | TERM | INT | USR1 (the graceful stop a scheduler's signal gives)");
  }

  void run(const RunContext& context) override {
    const auto recorded = with_compute(context, dist::resolve_compute(o_.device, o_.precision), o_.deterministic);
    grpo::GrpoRunInfo info;
    info.on_start = [&] {
      recorded.announce();
      recorded.save_to_directory(o_.out);
    };
    grpo::run_grpo(o_, info);
  }

 private:
  grpo::GrpoOptions o_;
};

std::unique_ptr<Command> make_grpo_command() { return std::make_unique<GrpoCommand>(); }

}  // namespace nla::cli
