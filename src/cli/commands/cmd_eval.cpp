// nla eval: the all-layer evaluation sweep (DESIGN section 5); nla eval-merge: part run
// directories of one sweep (split by layer blocks, e.g. a Slurm array) -> one run directory.
#include <algorithm>
#include <filesystem>
#include <sstream>

#include "nla/cli/command.hpp"
#include "nla/core/error.hpp"
#include "nla/core/log.hpp"
#include "nla/core/world.hpp"
#include "nla/eval/sweep.hpp"

namespace nla::cli {

class EvalCommand : public Command {
 public:
  std::string name() const override { return "eval"; }
  std::string summary() const override {
    return "the all-layer sweep: AV + AR on every layer, baselines, metrics, CLC, PCA -> RUN/results.h5";
  }

  void declare(OptionSet& options) override {
    options.add("eval", "av", &o_.av, "AV checkpoint directory (full model + nla_meta.yaml)");
    options.add("eval", "ar", &o_.ar, "AR checkpoint directory; its layer is the anchor layer");
    options.add("eval", "model", &o_.model, "base checkpoint directory (tokenizer if the AV has none; recorded)");
    options.add("eval", "store", &o_.store, "held-out activation store (nla extract)");
    options.add("eval", "layers", &o_.layers, "all (the store's) | 20 | 0-5,8");
    options.add("eval", "out", &o_.out, "run directory: results.h5, summary.csv, config.ini, provenance.json");
    options.add("eval", "samples", &o_.samples, "store rows evaluated at most (a seeded sample, the same at every layer)");
    options.add("eval", "seed", &o_.seed, "seed of the rows, random vectors, permutations, distractors, sampling");
    options.add("eval", "batch", &o_.batch, "samples per task (one generation + AR batch; the unit of work per rank)");
    options.add("eval", "max-new-tokens", &o_.max_new_tokens, "AV answer length cap (a longer answer is failed)");
    options.add("eval", "temperature", &o_.temperature, "AV sampling temperature (0: greedy)");
    options.add("eval", "top-p", &o_.top_p, "AV nucleus sampling (with temperature > 0)");
    options.add("eval", "pool", &o_.pool, "recall@10 candidates per sample: the truth + pool-1 distractors (capped by samples)");
    options.add("eval", "pca-layers", &o_.pca_layers, "layers with PCA data: all | \"\" | a list");
    options.add("eval", "var-nrm-source", &o_.var_nrm_source,
                "fve_nrm's var_nrm: auto (the AR's nla_meta.yaml if it has one, else per layer) | meta | layer");
    options.add("eval", "av-descriptions", &o_.av_descriptions,
                "\"\": the AV writes the av descriptions; NAME: take /descriptions/NAME of the store instead (scores a labeler)");
    options.add("eval", "max-tokens", &o_.max_tokens, "AR inputs keep their last N tokens");
    options.add("eval", "device", &o_.device, "cpu | cuda | cuda:N");
    options.add("eval", "overwrite", &o_.overwrite, "replace an existing RUN/results.h5");
  }

  void run(const RunContext& context) override {
    eval::run_sweep(o_, context.version + " | " + context.command_line, [&] {
      context.announce();
      run_on_root(MPI_COMM_WORLD, [&] {
        std::filesystem::create_directories(o_.out);
        context.save_to_directory(o_.out);
      });
    });
  }

 private:
  eval::SweepOptions o_;
};

class EvalMergeCommand : public Command {
 public:
  std::string name() const override { return "eval-merge"; }
  std::string summary() const override { return "merge part run directories of one nla eval sweep into one run directory"; }

  void declare(OptionSet& options) override {
    options.add("eval-merge", "parts", &parts_, "part run directories, comma-separated; a directory without results.h5 (RUN/parts) means its subdirectories");
    options.add("eval-merge", "out", &out_, "the merged run directory");
    options.add("eval-merge", "overwrite", &overwrite_, "replace an existing OUT/results.h5");
    options.positional("parts");
  }

  void run(const RunContext& context) override {
    run_on_root(MPI_COMM_WORLD, [&] {
      NLA_CHECK_INPUT(!out_.empty(), "option 'out': expected a run directory");
      NLA_CHECK_INPUT(overwrite_ || !std::filesystem::exists(out_ + "/results.h5"), out_,
                      "/results.h5: exists already (option 'overwrite' replaces it)");
      std::vector<eval::SweepResults> parts;
      std::string list = parts_;
      for (char& c : list)
        if (c == ',') c = ' ';
      std::istringstream words(list);
      for (std::string dir; words >> dir;) {
        // A directory without results.h5 (RUN/parts) stands for its part subdirectories.
        std::vector<std::string> dirs;
        if (std::filesystem::is_directory(dir) && !std::filesystem::exists(dir + "/results.h5")) {
          for (const auto& entry : std::filesystem::directory_iterator(dir))
            if (std::filesystem::exists(entry.path() / "results.h5")) dirs.push_back(entry.path().string());
          std::sort(dirs.begin(), dirs.end());
        } else {
          dirs.push_back(dir);
        }
        for (const auto& part : dirs) parts.push_back(eval::read_results(part + "/results.h5"));
      }
      NLA_CHECK_INPUT(!parts.empty(), "option 'parts': expected part run directories");
      auto merged = eval::merge_results(parts);
      merged.attributes["created_by"] = context.version + " | " + context.command_line;
      std::filesystem::create_directories(out_);
      context.save_to_directory(out_);
      eval::write_summary_csv(merged, out_ + "/summary.csv");
      eval::write_results(merged, out_ + "/results.h5");
      log_info("eval-merge: %zu parts, %zu layers -> %s", parts.size(), merged.layers.size(), out_.c_str());
    });
  }

 private:
  std::string parts_;
  std::string out_;
  bool overwrite_ = false;
};

std::unique_ptr<Command> make_eval_command() { return std::make_unique<EvalCommand>(); }
std::unique_ptr<Command> make_eval_merge_command() { return std::make_unique<EvalMergeCommand>(); }

}  // namespace nla::cli
