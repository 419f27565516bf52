// nla train-av: AV SFT (activation injected at the marker -> the description), sharded
// over the ranks.
#include "nla/cli/command.hpp"
#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/core/log.hpp"
#include "nla/core/world.hpp"
#include "sft_options.hpp"

namespace nla::cli {

class TrainAvCommand : public Command {
 public:
  std::string name() const override { return "train-av"; }
  std::string summary() const override {
    return "SFT of the activation verbalizer (AV) on an activation store's descriptions (FSDP over the ranks)";
  }
  void declare(OptionSet& options) override {
    o_.lr_max = 3e-4;  // defaults shown by --help: the AV starts from a base model, not an identity head
    o_.lr_min = 3e-5;
    declare_sft_options(options, "train-av", o_);
  }

  void run(const RunContext& context) override {
    const auto recorded = with_compute(context, dist::resolve_compute(o_.device, o_.precision), o_.deterministic);
    const auto inputs = train::check_sft_inputs(o_, "train-av");  // before announcing: bad input is one line
    run_on_root(MPI_COMM_WORLD, [&] {
      NLA_CHECK_INPUT(!o_.out.empty(), "option 'out': expected a run directory");
      fs::create_directories(o_.out);
      recorded.announce();
      recorded.save_to_directory(o_.out);
    });
    auto result = train::train_av(o_, inputs);
    if (!result.evals.empty() && !result.losses.empty())
      log_info("train-av: val loss %.4f -> %.4f, train loss %.4f -> %.4f", result.evals.front().loss,
               result.evals.back().loss, result.losses.front(), result.losses.back());
  }

 private:
  train::SftOptions o_;
};

std::unique_ptr<Command> make_train_av_command() { return std::make_unique<TrainAvCommand>(); }

}  // namespace nla::cli
