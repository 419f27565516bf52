// nla label: activation store -> descriptions (the stage: src/label/label.cpp).
#include "device_options.hpp"
#include "nla/cli/command.hpp"
#include "nla/label/label.hpp"

namespace nla::cli {

class LabelCommand : public Command {
 public:
  std::string name() const override { return "label"; }
  std::string summary() const override {
    return "activation store -> gold descriptions (labelers: context, jsonl:FILE, av:DIR)";
  }

  void declare(OptionSet& options) override {
    options.add("label", "store", &o_.store, "activation store (from nla extract)");
    options.add("label", "labeler", &o_.labeler, "context | jsonl:FILE | av:DIR");
    options.add("label", "name", &o_.name, "descriptions are stored as /descriptions/<name>");
    options.add("label", "out", &o_.out, "store to write into (\"\": the input store itself; else a copy)");
    options.add("label", "tokenizer", &o_.tokenizer, "tokenizer.json or its directory (\"\": the store's model's)");
    options.add("label", "context-tokens", &o_.context_tokens, "context labeler: tokens of left context quoted");
    options.add("label", "fields", &o_.fields,
                "context labeler: snippets written, a subset of before (the left context), token (the token at "
                "the position), domain (the document's source)");
    options.add("label", "layer", &o_.layer, "av: store layer (-1: the AV's critic.extraction_layer_index)");
    options.add("label", "temperature", &o_.temperature, "av: sampling temperature (0: greedy)");
    options.add("label", "top-p", &o_.top_p, "av: nucleus sampling mass, in (0, 1]");
    options.add("label", "seed", &o_.seed, "av: row r is sampled with a seed from (seed, r)");
    options.add("label", "max-new-tokens", &o_.max_new_tokens,
                "av: cap on the answer; unclosed answers are stored as \"\"");
    options.add("label", "batch", &o_.batch, "av: sequences per generator call");
    declare_device_options(options, "label", o_.device, o_.precision, "av: ");
  }

  void run(const RunContext& context) override {
    auto recorded = [&](const std::optional<dist::Compute>& compute) {
      return compute ? with_compute(context, *compute) : context;
    };
    label::LabelHooks hooks;
    hooks.announce = [&](const std::optional<dist::Compute>& compute) { recorded(compute).announce(); };
    hooks.provenance = [&](const std::optional<dist::Compute>& compute) { return recorded(compute).provenance_json(); };
    label::run_label(o_, hooks);
  }

 private:
  label::LabelOptions o_;
};

std::unique_ptr<Command> make_label_command() { return std::make_unique<LabelCommand>(); }

}  // namespace nla::cli
