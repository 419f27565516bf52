// nla: one binary, subcommands (see `nla --help` and DESIGN.md section 2).
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <iterator>

#include "nla/cli/command.hpp"  // defines: make_commands, run_main

namespace {

// Runtime settings that glibc, libgomp and OpenBLAS read only at process start: nla sets the
// ones the user has not set and re-executes itself once, before the libraries start.
//
// Malloc: training allocates and frees large temporaries every step (logits, gathered FSDP
// units, their gradients). glibc hands blocks above its mmap threshold back to the kernel on
// free, and re-faulting their pages cost more than the math (train-ar on the tiny model:
// 0.88 -> 2.24 steps/s, sys time 3.4 s -> 0.8 s). The threshold goes beyond 32 MB only
// through GLIBC_TUNABLES. NLA_NO_MALLOC_TUNING=1 leaves it alone.
//
// Threads: LibTorch's OpenMP pool and OpenBLAS's own pthreads share the cores. By default
// both spin after their work (libgomp actively; OpenBLAS through sched_yield for ~2^28
// cycles), so each steals the cores the other's next region needs: on 2 cores with 2
// threads the eval sweep ran at 5.0 samples/s with 82 s of sys time, slower than 1 thread
// (9.4). Sleeping at once (OMP_WAIT_POLICY=PASSIVE, OPENBLAS_THREAD_TIMEOUT=4, OpenBLAS's
// minimum) gives 10.3 samples/s with 6.5 s of sys time, and the small preset's train step
// 132 -> 185 tokens/s. NLA_NO_THREAD_TUNING=1 leaves both alone.
struct RuntimeSetting {
  const char* name;
  const char* assignment;  // "name=value", as an environment entry
  const char* opt_out;
  const char* value() const { return assignment + std::strlen(name) + 1; }
};
constexpr RuntimeSetting kRuntimeSettings[] = {
    {"GLIBC_TUNABLES", "GLIBC_TUNABLES=glibc.malloc.mmap_threshold=2147483647:glibc.malloc.trim_threshold=2147483647",
     "NLA_NO_MALLOC_TUNING"},
    {"OMP_WAIT_POLICY", "OMP_WAIT_POLICY=PASSIVE", "NLA_NO_THREAD_TUNING"},
    {"OPENBLAS_THREAD_TIMEOUT", "OPENBLAS_THREAD_TIMEOUT=4", "NLA_NO_THREAD_TUNING"},
};

// The re-execution happens before any library's constructor: from the executable's
// .preinit_array, which the dynamic loader runs after mapping and relocating the libraries
// but before their initialisers (LibTorch's operator registration is most of a start), so
// the first process does not pay for them (`nla --help` without the settings: 1.9 -> 1.6 s
// here). glibc passes (argc, argv, envp) there; the C library's own environment is not
// set up yet, so only envp is read, and the new one is built in static storage.
bool in_environment(char** envp, const char* name) {
  const size_t length = std::strlen(name);
  for (char** entry = envp; entry != nullptr && *entry != nullptr; ++entry)
    if (std::strncmp(*entry, name, length) == 0 && (*entry)[length] == '=') return true;
  return false;
}

constexpr size_t kMaxEnvironment = 4096;  // larger environments: main() re-executes instead

void tune_runtime_before_libraries(int, char** argv, char** envp) {
  static char* tuned[kMaxEnvironment + std::size(kRuntimeSettings) + 1];
  size_t count = 0;
  for (char** entry = envp; entry != nullptr && *entry != nullptr; ++entry) {
    if (count == kMaxEnvironment) return;
    tuned[count++] = *entry;
  }
  bool changed = false;
  for (const auto& setting : kRuntimeSettings) {
    if (in_environment(envp, setting.name) || in_environment(envp, setting.opt_out)) continue;  // the user's choice
    tuned[count++] = const_cast<char*>(setting.assignment);
    changed = true;
  }
  if (!changed) return;  // also the re-executed process: everything is set now
  tuned[count] = nullptr;
  execve("/proc/self/exe", argv, tuned);  // returns only on failure: main() tries once more
}
[[gnu::section(".preinit_array"), gnu::used]] void (*tune_runtime_entry)(int, char**, char**) =
    tune_runtime_before_libraries;

// The same from main(), for an environment too large for the static copy (or a loader
// without .preinit_array): there the settings are already set and it returns at once.
void tune_runtime(char** argv) {
  bool set_here[std::size(kRuntimeSettings)] = {};
  bool changed = false;
  for (size_t i = 0; i < std::size(kRuntimeSettings); ++i) {
    const auto& setting = kRuntimeSettings[i];
    if (std::getenv(setting.name) != nullptr || std::getenv(setting.opt_out) != nullptr) continue;  // the user's choice
    setenv(setting.name, setting.value(), 1);
    set_here[i] = changed = true;
  }
  if (!changed) return;  // also the re-executed process: everything is set now
  execv("/proc/self/exe", argv);  // returns only on failure: run untuned
  for (size_t i = 0; i < std::size(kRuntimeSettings); ++i)
    if (set_here[i]) unsetenv(kRuntimeSettings[i].name);
}

}  // namespace

int main(int argc, char** argv) {
  tune_runtime(argv);
  // A file-size limit (ulimit -f, as batch systems set) would kill the process with SIGXFSZ
  // mid-write; ignored, the write fails with EFBIG, which nla reports naming the file.
  std::signal(SIGXFSZ, SIG_IGN);
  return nla::cli::run_main(argc, argv, nla::cli::make_commands());
}
