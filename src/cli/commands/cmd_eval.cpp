// nla eval: the all-layer evaluation sweep (DESIGN section 5), of one anchor or of several
// (--av A,B --ar C,D: one run per anchor in RUN/anchor_<L>/ + RUN/coverage.csv); nla
// eval-merge: part run directories of one sweep (split by layer blocks, e.g. a Slurm array)
// -> one run directory.
#include <sstream>

#include "device_options.hpp"
#include "nla/cli/command.hpp"
#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/core/log.hpp"
#include "nla/core/world.hpp"
#include "nla/eval/anchors.hpp"
#include "nla/eval/sweep.hpp"

namespace nla::cli {

namespace {

// The resolved INI with [eval]'s av, ar and out replaced by one anchor's.
std::string anchor_config(const std::string& resolved, const eval::SweepOptions& one) {
  std::istringstream in(resolved);
  std::ostringstream out;
  std::string section;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.front() == '[') section = line;
    const std::string note = "  # one anchor of the several-anchor run";
    if (section == "[eval]" && line.rfind("av = ", 0) == 0) line = "av = " + one.av + note;
    else if (section == "[eval]" && line.rfind("ar = ", 0) == 0) line = "ar = " + one.ar + note;
    else if (section == "[eval]" && line.rfind("out = ", 0) == 0) line = "out = " + one.out + note;
    out << line << "\n";
  }
  return out.str();
}

}  // namespace

class EvalCommand : public Command {
 public:
  std::string name() const override { return "eval"; }
  std::string summary() const override {
    return "the all-layer sweep: AV + AR on every layer, baselines, metrics, CLC, PCA -> RUN/results.h5";
  }

  void declare(OptionSet& options) override {
    options.add("eval", "av", &o_.av,
                "AV checkpoint directory (full model + nla_meta.yaml); several, comma-separated: one sweep per anchor");
    options.add("eval", "ar", &o_.ar,
                "AR checkpoint directory; its layer is the anchor layer; several, comma-separated: paired with the AVs "
                "by layer (nla_meta.yaml)");
    options.add("eval", "model", &o_.model, "base checkpoint directory (tokenizer if the AV has none; recorded)");
    options.add("eval", "store", &o_.store, "held-out activation store (nla extract)");
    options.add("eval", "layers", &o_.layers, "all (the store's) | 20 | 0-5,8");
    options.add("eval", "out", &o_.out,
                "run directory: results.h5, summary.csv, config.ini, provenance.json (several anchors: anchor_<L>/ "
                "each, coverage.csv, coverage.json)");
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
    declare_device_options(options, "eval", o_.device, o_.precision);
    options.add("eval", "overwrite", &o_.overwrite,
                "replace an existing RUN/results.h5 (several anchors: their runs and RUN/coverage.json)");
    options.add("eval", "coverage-layers", &o_.coverage.layers,
                "several anchors: the layers the smallest anchor set must cover: all (every evaluated layer) | A-B");
    options.add("eval", "coverage-min-cosine", &o_.coverage.min_cosine,
                "several anchors: a layer is covered by an anchor whose mean av cosine there is >= this");
  }

  void run(const RunContext& given) override {
    const RunContext context = with_compute(given, dist::resolve_compute(o_.device, o_.precision));
    const std::string created_by = context.version + " | " + context.command_line;
    auto record = [&](const std::string& dir, const RunContext& what) {
      run_on_root(MPI_COMM_WORLD, [&] {
        fs::create_directories(dir);
        what.save_to_directory(dir);
      });
    };
    if (!eval::has_several_anchors(o_)) {
      eval::run_sweep(o_, created_by, [&] {
        context.announce();
        record(o_.out, context);
      });
      return;
    }
    eval::run_anchor_sweeps(
        o_, created_by,
        [&] {
          context.announce();
          record(o_.out, context);
        },
        [&](const eval::SweepOptions& one) {
          // This anchor's config.ini reruns it alone: its av, ar and out in place of the lists.
          RunContext anchor_context = context;
          anchor_context.resolved_config = anchor_config(context.resolved_config, one);
          record(one.out, anchor_context);
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
    options.add("eval-merge", "parts", &parts_,
                "part run directories, comma-separated; a directory without results.h5 or coverage.json (RUN/parts) means "
                "its subdirectories; parts of a several-anchor sweep merge anchor by anchor");
    options.add("eval-merge", "out", &out_, "the merged run directory");
    options.add("eval-merge", "overwrite", &overwrite_, "replace an existing OUT/results.h5 (several anchors: OUT/coverage.json)");
    options.positional("parts");
  }

  void run(const RunContext& context) override {
    run_on_root(MPI_COMM_WORLD, [&] {
      std::string list = parts_;
      for (char& c : list)
        if (c == ',') c = ' ';
      std::istringstream words(list);
      std::vector<std::string> dirs;
      for (std::string dir; words >> dir;) dirs.push_back(dir);
      eval::merge_run_directories(dirs, out_, overwrite_, context.version + " | " + context.command_line,
                                  [&](const std::string& dir) { context.save_to_directory(dir); });
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
