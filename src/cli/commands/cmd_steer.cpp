// nla steer-vector: a steering vector from two sets of texts (contrastive mean difference);
// nla steer-audit: what steering with it does, in the verbalizer's words (include/nla/steer/).
#include "device_options.hpp"
#include "nla/cli/command.hpp"
#include "nla/core/fs.hpp"
#include "nla/core/world.hpp"
#include "nla/steer/audit.hpp"
#include "nla/steer/steering_vector.hpp"

namespace nla::cli {

class SteerVectorCommand : public Command {
 public:
  std::string name() const override { return "steer-vector"; }
  std::string summary() const override {
    return "a steering vector: mean layer-L activation of positive minus negative texts -> vector.safetensors";
  }

  void declare(OptionSet& options) override {
    options.add("steer-vector", "model", &o_.model, "checkpoint directory (config.json, safetensors)");
    options.add("steer-vector", "tokenizer", &o_.tokenizer, "tokenizer.json or its directory (\"\": the model's)");
    options.add("steer-vector", "positive", &o_.positive, "JSONL texts that carry the concept");
    options.add("steer-vector", "negative", &o_.negative, "JSONL texts that do not");
    options.add("steer-vector", "text-field", &o_.text_field, "JSONL field holding the text");
    options.add("steer-vector", "layer", &o_.layer, "the residual after this block (layer l = output of block l)");
    options.add("steer-vector", "token", &o_.token,
                "last: each text's last token | mean: the mean over each text's tokens from min-position");
    options.add("steer-vector", "min-position", &o_.min_position,
                "first token of a mean and of the median norm (the first token's residual is an outlier)");
    options.add("steer-vector", "max-tokens", &o_.max_tokens, "texts are truncated to their first N tokens");
    options.add("steer-vector", "max-texts", &o_.max_texts, "the first N texts of each file (-1: all)");
    options.add("steer-vector", "batch", &o_.batch, "texts per forward (fixed chunks: the same vector on any rank count)");
    options.add("steer-vector", "out", &o_.out, "the vector (safetensors: 'vector' [d] + metadata)");
    options.add("steer-vector", "overwrite", &o_.overwrite, "replace an existing out");
    declare_device_options(options, "steer-vector", device_, precision_);
  }

  void run(const RunContext& given) override {
    const auto compute = dist::resolve_compute(device_, precision_);
    const auto context = with_compute(given, compute);
    steer::run_steer_vector(o_, compute, context.provenance_json(), [&] { context.announce(); });
  }

 private:
  steer::SteerVectorOptions o_;
  std::string device_ = "auto", precision_ = "auto";
};

class SteerAuditCommand : public Command {
 public:
  std::string name() const override { return "steer-audit"; }
  std::string summary() const override {
    return "audit activation steering with the AV: dose-response of the descriptions, reconstructions and KL -> "
           "RUN/audit.h5";
  }

  void declare(OptionSet& options) override {
    options.add("steer-audit", "model", &o_.model, "the model that is steered (checkpoint directory)");
    options.add("steer-audit", "tokenizer", &o_.tokenizer, "tokenizer.json or its directory (\"\": the model's)");
    options.add("steer-audit", "av", &o_.av, "AV checkpoint directory (verbalizes the steered activations)");
    options.add("steer-audit", "ar", &o_.ar, "AR checkpoint directory (reconstructs them from the descriptions)");
    options.add("steer-audit", "vector", &o_.vector, "steering vector: nla steer-vector's file, or any safetensors [d]");
    options.add("steer-audit", "layer", &o_.layer,
                "steered and read after this block (-1: the vector file's layer, else the AV's extraction layer)");
    options.add("steer-audit", "scales", &o_.scales,
                "steering scales in units of the layer's median activation norm (0, the unsteered run, is always run)");
    options.add("steer-audit", "prompts", &o_.prompts, "JSONL texts the model continues");
    options.add("steer-audit", "text-field", &o_.text_field, "JSONL field holding the prompt");
    options.add("steer-audit", "concept-words", &o_.concept_words,
                "comma-separated words whose mention in a description counts (\"\": no mention rate)");
    options.add("steer-audit", "positions-per-prompt", &o_.positions_per_prompt,
                "activations sampled from each continuation (K)");
    options.add("steer-audit", "max-prompts", &o_.max_prompts, "the first N prompts of the file (-1: all)");
    options.add("steer-audit", "max-prompt-tokens", &o_.max_prompt_tokens, "prompts are truncated to their first N tokens");
    options.add("steer-audit", "max-new-tokens", &o_.max_new_tokens, "continuation length");
    options.add("steer-audit", "temperature", &o_.temperature, "continuation sampling temperature (0: greedy)");
    options.add("steer-audit", "top-p", &o_.top_p, "continuation nucleus sampling (with temperature > 0)");
    options.add("steer-audit", "av-max-new-tokens", &o_.av_max_new_tokens,
                "AV answer length cap (an unclosed answer is failed)");
    options.add("steer-audit", "av-temperature", &o_.av_temperature,
                "AV sampling temperature (0: greedy; sampled answers, seeded per prompt and position, show how often "
                "the AV names something, not only its most likely answer)");
    options.add("steer-audit", "seed", &o_.seed, "seed of the random direction, positions and sampling");
    options.add("steer-audit", "batch", &o_.batch, "prompts per chunk (the unit of work per rank)");
    options.add("steer-audit", "out", &o_.out, "run directory: audit.h5, summary.csv, config.ini, provenance.json");
    options.add("steer-audit", "overwrite", &o_.overwrite, "replace an existing RUN/audit.h5");
    declare_device_options(options, "steer-audit", device_, precision_);
  }

  void run(const RunContext& given) override {
    const auto compute = dist::resolve_compute(device_, precision_);
    const auto context = with_compute(given, compute);
    steer::run_steer_audit(o_, compute, context.provenance_json(), [&] {
      context.announce();
      run_on_root(MPI_COMM_WORLD, [&] { context.save_to_directory(o_.out); });
    });
  }

 private:
  steer::SteerAuditOptions o_;
  std::string device_ = "auto", precision_ = "auto";
};

std::unique_ptr<Command> make_steer_vector_command() { return std::make_unique<SteerVectorCommand>(); }
std::unique_ptr<Command> make_steer_audit_command() { return std::make_unique<SteerAuditCommand>(); }

}  // namespace nla::cli
