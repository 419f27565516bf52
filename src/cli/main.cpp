// nla: one binary, subcommands (see `nla --help` and DESIGN.md section 2).
#include <unistd.h>

#include <cstdlib>

#include "nla/cli/command.hpp"  // defines: make_commands, run_main

namespace {

// Training allocates and frees large temporaries every step (logits, gathered FSDP units,
// their gradients). glibc hands blocks above its mmap threshold back to the kernel on free,
// and re-faulting their pages cost more than the math (train-ar on the tiny model: 0.88 ->
// 2.24 steps/s, sys time 3.4 s -> 0.8 s). The threshold goes beyond 32 MB only through
// GLIBC_TUNABLES, which glibc reads at process start: set it and re-exec once, before MPI
// starts. NLA_NO_MALLOC_TUNING=1 (or any GLIBC_TUNABLES of the user's) leaves malloc alone.
void tune_malloc(char** argv) {
  if (std::getenv("GLIBC_TUNABLES") != nullptr || std::getenv("NLA_NO_MALLOC_TUNING") != nullptr) return;
  setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=2147483647:glibc.malloc.trim_threshold=2147483647", 1);
  execv("/proc/self/exe", argv);  // returns only on failure: run untuned
  unsetenv("GLIBC_TUNABLES");
}

}  // namespace

int main(int argc, char** argv) {
  tune_malloc(argv);
  return nla::cli::run_main(argc, argv, nla::cli::make_commands());
}
