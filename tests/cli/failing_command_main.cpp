// A stand-in `nla` with commands that fail on purpose, to test the job-wide error policy
// under the MPI launcher: `fail --rank r --kind internal|input` fails on rank r while the
// others wait in a barrier (they would hang forever without the abort).
#include <mpi.h>

#include "nla/cli/command.hpp"
#include "nla/core/error.hpp"
#include "nla/core/world.hpp"

namespace {

class FailCommand : public nla::cli::Command {
 public:
  std::string name() const override { return "fail"; }
  std::string summary() const override { return "fail on one rank"; }
  void declare(nla::cli::OptionSet& options) override {
    options.add("fail", "rank", &rank_, "rank that fails");
    options.add("fail", "kind", &kind_, "internal | input | collective-input");
  }
  void run(const nla::cli::RunContext&) override {
    if (kind_ == "collective-input") {
      // Found by rank 0 inside a collective section: every rank raises it together.
      nla::run_on_root(MPI_COMM_WORLD, [] { NLA_INPUT_ERROR("acts.h5: attribute 'format': expected \"nla-activations\""); });
    }
    if (nla::world_rank() == rank_) {
      if (kind_ == "input") NLA_INPUT_ERROR("data.jsonl:3: field 'text': expected a string");
      NLA_THROW("simulated failure");
    }
    MPI_Barrier(MPI_COMM_WORLD);
  }

 private:
  int rank_ = 0;
  std::string kind_ = "internal";
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::unique_ptr<nla::cli::Command>> commands;
  commands.push_back(std::make_unique<FailCommand>());
  return nla::cli::run_main(argc, argv, std::move(commands));
}
