// A subcommand of `nla`: it declares its options (bound to its own fields) and runs.
// run_main() owns MPI, parsing, logging setup and the error policy:
//   - an InputError while parsing (on any rank): rank 0 prints one line, all exit 2;
//   - an InputError while running: one line on stderr, exit 2 (the whole job);
//   - any other exception on one rank: "ERROR on rank r: ..." and the job is aborted.
#pragma once

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nla/cli/options.hpp"

namespace nla::cli {

// What a command that runs a model resolved from its device options (nla/dist/device.hpp).
struct ComputeRecord {
  std::string device;                 // rank 0's: "cpu" | "cuda:0"
  std::string device_name;            // the GPU's name; "" on the CPU
  std::string precision;              // "fp32" | "bf16"
  std::optional<bool> deterministic;  // the trainers' --deterministic
};

// What every command gets when it runs.
struct RunContext {
  std::string command;         // "tokenize"
  std::string command_line;    // the argv, shell-quoted
  std::string resolved_config; // INI text of every option and its value
  std::string version;         // NLA_VERSION_FULL
  std::optional<ComputeRecord> compute;  // set by commands that run a model (with_compute)
  std::vector<std::string> given_options;  // names set on the command line or in the config file

  bool given(const std::string& option) const {
    return std::find(given_options.begin(), given_options.end(), option) != given_options.end();
  }

  // {"nla_version": ..., "command_line": ..., "config": ...} as one JSON object: every
  // output records what made it; with `compute` also "device", "device_name" (null on the
  // CPU), "precision" and, for trainers, "deterministic".
  std::string provenance_json() const;
  // Rank 0 prints the version, command line and resolved configuration. Long-running
  // commands call it once their inputs are validated (so a bad input stays one line).
  void announce() const;
  // Writes config.ini (resolved_config) and provenance.json into `directory` (rank 0).
  void save_to_directory(const std::string& directory) const;
};

class Command {
 public:
  virtual ~Command() = default;
  virtual std::string name() const = 0;
  virtual std::string summary() const = 0;
  virtual void declare(OptionSet& options) = 0;
  virtual void run(const RunContext& context) = 0;
};

// The table of every command (src/cli/commands.cpp).
std::vector<std::unique_ptr<Command>> make_commands();

// The body of main(): returns the process exit status (0, 2, or 1 when aborting alone).
int run_main(int argc, char** argv, std::vector<std::unique_ptr<Command>> commands);

// Shell-quotes argv into one line: nla tokenize --input 'my file.jsonl'
std::string quote_command_line(int argc, char** argv);

}  // namespace nla::cli
