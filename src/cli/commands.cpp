// The table of `nla` subcommands, in the order `nla --help` lists them.
// Each command lives in commands/cmd_<name>.cpp.
#include "nla/cli/command.hpp"

namespace nla::cli {

// defined in commands/cmd_<name>.cpp
std::unique_ptr<Command> make_bench_command();
std::unique_ptr<Command> make_init_model_command();
std::unique_ptr<Command> make_generate_command();
std::unique_ptr<Command> make_tokenize_command();
std::unique_ptr<Command> make_extract_command();
std::unique_ptr<Command> make_label_command();
std::unique_ptr<Command> make_train_ar_command();
std::unique_ptr<Command> make_train_av_command();
std::unique_ptr<Command> make_reconstruct_command();
std::unique_ptr<Command> make_eval_command();
std::unique_ptr<Command> make_eval_merge_command();
std::unique_ptr<Command> make_verbalize_command();
std::unique_ptr<Command> make_grpo_command();
std::unique_ptr<Command> make_steer_vector_command();
std::unique_ptr<Command> make_steer_audit_command();

std::vector<std::unique_ptr<Command>> make_commands() {
  std::vector<std::unique_ptr<Command>> commands;
  commands.push_back(make_init_model_command());
  commands.push_back(make_generate_command());
  commands.push_back(make_tokenize_command());
  commands.push_back(make_extract_command());
  commands.push_back(make_label_command());
  commands.push_back(make_train_ar_command());
  commands.push_back(make_train_av_command());
  commands.push_back(make_verbalize_command());
  commands.push_back(make_reconstruct_command());
  commands.push_back(make_grpo_command());
  commands.push_back(make_eval_command());
  commands.push_back(make_eval_merge_command());
  commands.push_back(make_steer_vector_command());
  commands.push_back(make_steer_audit_command());
  commands.push_back(make_bench_command());
  return commands;
}

}  // namespace nla::cli
