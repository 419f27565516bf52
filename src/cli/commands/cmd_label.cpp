// nla label: activation store -> gold descriptions (/descriptions/<name> in the store).
#include <filesystem>

#include "nla/cli/command.hpp"
#include "nla/core/atomic_file.hpp"
#include "nla/core/error.hpp"
#include "nla/core/log.hpp"
#include "nla/core/progress.hpp"
#include "nla/core/world.hpp"
#include "nla/label/labelers.hpp"

namespace nla::cli {

class LabelCommand : public Command {
 public:
  std::string name() const override { return "label"; }
  std::string summary() const override {
    return "activation store -> gold descriptions (labelers: context, jsonl:FILE; av:DIR arrives with the AV)";
  }

  void declare(OptionSet& options) override {
    options.add("label", "store", &store_, "activation store (from nla extract)");
    options.add("label", "labeler", &labeler_, "context | jsonl:FILE | av:DIR");
    options.add("label", "name", &name_, "descriptions are stored as /descriptions/<name>");
    options.add("label", "out", &out_, "store to write into (\"\": the input store itself; else a copy)");
    options.add("label", "tokenizer", &tokenizer_, "tokenizer.json or its directory (\"\": the store's model's)");
    options.add("label", "context-tokens", &context_tokens_, "context labeler: tokens of left context quoted");
  }

  void run(const RunContext& context) override {
    NLA_CHECK_INPUT(!store_.empty(), "option 'store': expected an activation store");
    NLA_CHECK_INPUT(!name_.empty() && name_.find('/') == std::string::npos,
                    "option 'name': expected a name without '/', got '", name_, "'");
    NLA_CHECK_INPUT(context_tokens_ >= 0, "option 'context-tokens': expected >= 0, got ", context_tokens_);
    // Labelling is cheap next to the model stages: rank 0 does it, the others wait.
    run_on_root(MPI_COMM_WORLD, [&] { label(context); });
  }

 private:
  void label(const RunContext& context) {
    std::vector<std::string> descriptions;
    int64_t n_samples = 0;
    {
      store::ActivationStore acts(store_);
      n_samples = acts.n_samples();
      if (labeler_ == "context") {
        std::string tokenizer_path = tokenizer_.empty() ? acts.header().model : tokenizer_;
        auto tok = tokenizer::Tokenizer::from_file(tokenizer_path);
        label::ContextLabelerOptions options;
        options.context_tokens = context_tokens_;
        context.announce();
        Progress progress("label", n_samples, "samples");
        const int64_t chunk = 256;
        for (int64_t first = 0; first < n_samples; first += chunk) {
          auto part = label::context_descriptions(acts, tok, first, std::min(chunk, n_samples - first), options);
          descriptions.insert(descriptions.end(), part.begin(), part.end());
          progress.set(first + static_cast<int64_t>(part.size()));
        }
        progress.finish();
      } else if (labeler_.rfind("jsonl:", 0) == 0) {
        descriptions = label::jsonl_descriptions(labeler_.substr(6), n_samples);
      } else if (labeler_.rfind("av:", 0) == 0) {
        NLA_INPUT_ERROR("option 'labeler': av:DIR needs the verbalizer, which this build does not have yet; "
                        "use context or jsonl:FILE");
      } else {
        NLA_INPUT_ERROR("option 'labeler': expected context, jsonl:FILE or av:DIR, got '", labeler_, "'");
      }
    }
    std::string target = out_.empty() ? store_ : out_;
    if (target != store_) {
      // Label a copy: write it under a temporary name, rename when labelled.
      std::string temporary = target + ".tmp." + std::to_string(getpid());
      std::filesystem::copy_file(store_, temporary, std::filesystem::copy_options::overwrite_existing);
      store::ActivationStore::write_descriptions(temporary, name_, descriptions);
      std::filesystem::rename(temporary, target);
    } else {
      store::ActivationStore::write_descriptions(target, name_, descriptions);
    }
    log_info("label: %lld descriptions (%s) -> %s:/descriptions/%s", static_cast<long long>(n_samples),
             labeler_.c_str(), target.c_str(), name_.c_str());
    if (!descriptions.empty()) log_info("label: first: %s", descriptions.front().c_str());
  }

  std::string store_;
  std::string labeler_ = "context";
  std::string name_ = "gold";
  std::string out_;
  std::string tokenizer_;
  int context_tokens_ = 12;
};

std::unique_ptr<Command> make_label_command() { return std::make_unique<LabelCommand>(); }

}  // namespace nla::cli
