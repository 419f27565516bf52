// nla train-ar: AR SFT (descriptions -> activations of layer L), sharded over the ranks.
#include "nla/cli/command.hpp"
#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/core/log.hpp"
#include "nla/core/world.hpp"
#include "sft_options.hpp"

namespace nla::cli {

class TrainArCommand : public Command {
 public:
  std::string name() const override { return "train-ar"; }
  std::string summary() const override {
    return "SFT of the activation reconstructor (AR) on an activation store's descriptions (FSDP over the ranks)";
  }
  void declare(OptionSet& options) override { declare_sft_options(options, "train-ar", o_); }

  void run(const RunContext& context) override {
    const auto recorded = with_compute(context, dist::resolve_compute(o_.device, o_.precision), o_.deterministic);
    const auto inputs = train::check_sft_inputs(o_, "train-ar");  // before announcing: bad input is one line
    run_on_root(MPI_COMM_WORLD, [&] {
      NLA_CHECK_INPUT(!o_.out.empty(), "option 'out': expected a run directory");
      fs::create_directories(o_.out);
      recorded.announce();
      recorded.save_to_directory(o_.out);
    });
    auto result = train::train_ar(o_, inputs);
    if (!result.evals.empty() && !result.losses.empty())
      log_info("train-ar: val fve_nrm %.4f -> %.4f (mean baseline %.4f), loss %.4f -> %.4f", result.evals.front().fve_nrm,
               result.evals.back().fve_nrm, result.evals.back().baseline_fve_nrm, result.losses.front(),
               result.losses.back());
  }

 private:
  train::SftOptions o_;
};

std::unique_ptr<Command> make_train_ar_command() { return std::make_unique<TrainArCommand>(); }

}  // namespace nla::cli
