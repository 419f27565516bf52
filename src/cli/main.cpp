// nla: one binary, subcommands (see `nla --help` and DESIGN.md section 2).
#include "nla/cli/command.hpp"  // defines: make_commands, run_main

int main(int argc, char** argv) { return nla::cli::run_main(argc, argv, nla::cli::make_commands()); }
