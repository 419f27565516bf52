// The body of `nla`: MPI, command dispatch, option parsing, logging, the error policy.
#include <mpi.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>

#include "nla/cli/command.hpp"
#include "nla/cli/threads.hpp"
#include "nla/core/atomic_file.hpp"
#include "nla/core/error.hpp"
#include "nla/core/log.hpp"
#include "nla/core/stop_signal.hpp"
#include "nla/core/version.hpp"
#include "nla/core/world.hpp"

namespace nla::cli {

std::string quote_command_line(int argc, char** argv) {
  std::string line;
  for (int i = 0; i < argc; ++i) {
    std::string argument = argv[i];
    bool plain = !argument.empty() &&
                 argument.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                            "0123456789-_=./:,+@%") == std::string::npos;
    if (i) line += ' ';
    if (plain) {
      line += argument;
    } else {
      line += '\'';
      for (char c : argument) line += c == '\'' ? std::string("'\\''") : std::string(1, c);
      line += '\'';
    }
  }
  return line;
}

namespace {

// Output that never reached its destination (a full disk, a closed pipe, `> /dev/full`) is
// a failure: the buffered rest is flushed here, and any earlier error on the stream counts
// too. Returns the error line, or "" when everything written arrived. The cause is known only
// when this last flush is the write that failed (stdio keeps the error flag, not its errno).
std::string standard_output_failure() {
  errno = 0;
  std::cout.flush();
  const bool flush_failed = std::fflush(stdout) != 0;
  const int cause = errno;
  if (!flush_failed && !std::ferror(stdout) && std::cout) return "";
  std::string line = "error: writing to standard output failed";
  if (flush_failed && cause != 0) line += std::string(": ") + std::strerror(cause);
  return line + " (the output is incomplete)";
}

}  // namespace

std::string RunContext::provenance_json() const {
  // The environment that changes speed (threads, allocator; see main.cpp), placement, or
  // which kernel computes (sampling, AdamW: the same results within rounding): null where unset.
  nlohmann::json environment = nlohmann::json::object();
  for (const char* name : {"OMP_NUM_THREADS", "OMP_WAIT_POLICY", "OPENBLAS_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT",
                           "GLIBC_TUNABLES", "CUDA_VISIBLE_DEVICES", "NLA_DEVICE_SAMPLING", "NLA_CUDA_GRAPHS", "NLA_CPU_KERNELS",
                           "NLA_ADAMW_KERNEL"}) {
    const char* value = std::getenv(name);
    environment[name] = value != nullptr ? nlohmann::json(value) : nlohmann::json(nullptr);
  }
  nlohmann::json provenance = {{"nla_version", version},    {"command", command},
                               {"command_line", command_line}, {"config", resolved_config},
                               {"environment", environment}};
  if (compute) {
    provenance["device"] = compute->device;
    provenance["device_name"] = compute->device_name.empty() ? nlohmann::json(nullptr) : nlohmann::json(compute->device_name);
    provenance["precision"] = compute->precision;
    if (compute->deterministic) provenance["deterministic"] = *compute->deterministic;
  }
  return provenance.dump(2);
}

void RunContext::announce() const {
  log_info("nla %s | %s | %d rank%s", version.c_str(), command_line.c_str(), world_size(), world_size() == 1 ? "" : "s");
  if (compute)
    log_info("device %s%s%s | precision %s%s", compute->device.c_str(), compute->device_name.empty() ? "" : " ",
             compute->device_name.c_str(), compute->precision.c_str(),
             compute->deterministic.value_or(false) ? " | deterministic" : "");
  log_info("configuration:\n%s", resolved_config.c_str());
}

void RunContext::save_to_directory(const std::string& directory) const {
  if (!is_root()) return;
  write_file_atomic(directory + "/config.ini", resolved_config);
  write_file_atomic(directory + "/provenance.json", provenance_json() + "\n");
}

// Options every command has, in section [common].
struct CommonOptions {
  std::string log_level = "info";
  bool log_all_ranks = false;
  int threads = 0;

  void declare(OptionSet& options) {
    options.add("common", "log-level", &log_level, "debug | info | warn | error");
    options.add("common", "log-all-ranks", &log_all_ranks, "print log lines of every rank, not only rank 0");
    options.add("common", "threads", &threads, "CPU threads per rank for tensor math (0: OMP_NUM_THREADS or all cores / ranks per node)");
  }
};

namespace {

void print_usage(const std::vector<std::unique_ptr<Command>>& commands) {
  std::printf("nla %s: Natural Language Autoencoders on Qwen2-family LLMs\n\n", NLA_VERSION_FULL);
  std::printf("Usage: nla <command> [options]   (nla <command> --help lists its options)\n\nCommands:\n");
  for (const auto& command : commands) std::printf("  %-14s %s\n", command->name().c_str(), command->summary().c_str());
  std::printf("\nOptions may come from an INI file: nla <command> --config FILE (command line wins).\n");
}

// Every "section.key" that any command declares: a config file may serve several commands.
std::vector<std::string> all_ini_keys(const std::vector<std::unique_ptr<Command>>& commands) {
  std::vector<std::string> keys;
  for (const auto& command : commands) {
    OptionSet options(command->name());
    CommonOptions common;
    common.declare(options);
    command->declare(options);
    auto these = options.ini_keys();
    keys.insert(keys.end(), these.begin(), these.end());
  }
  return keys;
}

// Returns the first line of an exception message (c10::Error appends a backtrace).
std::string first_line(const char* text) {
  std::string message = text ? text : "";
  auto newline = message.find('\n');
  return newline == std::string::npos ? message : message.substr(0, newline);
}

// The lowest rank that failed, or -1 when every rank is ok. Used after parsing so that an
// error on one rank never leaves the others waiting in a collective, and one rank speaks.
int first_failed_rank(bool ok) {
  int local = ok ? world_size() : world_rank(), lowest = 0;
  NLA_CHECK_MPI(MPI_Allreduce(&local, &lowest, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
  return lowest == world_size() ? -1 : lowest;
}

}  // namespace

int run_main(int argc, char** argv, std::vector<std::unique_ptr<Command>> commands) {
  MpiSession mpi(&argc, &argv);
  const int rank = world_rank();

  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
    if (rank == 0) print_usage(commands);
    return argc < 2 ? 2 : 0;
  }
  if (!std::strcmp(argv[1], "--version")) {
    if (rank == 0) std::printf("nla %s\n", NLA_VERSION_FULL);
    return 0;
  }

  Command* command = nullptr;
  for (auto& candidate : commands)
    if (candidate->name() == argv[1]) command = candidate.get();
  if (!command) {
    if (rank == 0) std::fprintf(stderr, "nla: unknown command '%s' (nla --help lists the commands)\n", argv[1]);
    return 2;
  }

  // ---- parse (every rank does the same; an error anywhere ends all with status 2)
  OptionSet options(command->name());
  CommonOptions common;
  bool wants_help = false;
  std::string parse_error;
  try {
    common.declare(options);
    command->declare(options);
    std::vector<std::string> args(argv + 2, argv + argc);
    wants_help = !options.parse(args, all_ini_keys(commands));
    if (!wants_help) {
      log_set_level(parse_log_level(common.log_level));
      log_set_all_ranks(common.log_all_ranks);
      NLA_CHECK_INPUT(common.threads >= 0, "option 'threads': expected >= 0, got ", common.threads);
    }
  } catch (const std::exception& error) {
    parse_error = first_line(error.what());
  }
  int failed_rank = first_failed_rank(parse_error.empty());
  if (failed_rank >= 0) {
    if (rank == failed_rank && rank == 0) std::fprintf(stderr, "nla %s: %s\n", argv[1], parse_error.c_str());
    else if (rank == failed_rank) std::fprintf(stderr, "ERROR on rank %d: %s\n", rank, parse_error.c_str());
    return 2;
  }
  if (wants_help) {
    if (rank == 0) std::printf("%s", options.help_text(command->summary()).c_str());
    return 0;
  }

  RunContext context;
  context.command = command->name();
  context.command_line = quote_command_line(argc, argv);
  context.resolved_config = options.resolved_ini();
  context.version = NLA_VERSION_FULL;
  for (const auto& entry : options.entries())
    if (entry.source != "default") context.given_options.push_back(entry.name);
  log_debug("nla %s | %s | %d rank%s", NLA_VERSION_FULL, context.command_line.c_str(), world_size(),
            world_size() == 1 ? "" : "s");

  // ---- run: any failure ends the whole job (no rank left waiting)
  try {
    configure_threads(common.threads);
    command->run(context);
  } catch (const StoppedBySignal& stop) {
    // A training run stopped at a step boundary with its state saved, every rank together:
    // not a failure to abort, but unfinished work, so the status says which signal (143: SIGTERM).
    if (rank == 0) std::fprintf(stderr, "nla %s: %s\n", argv[1], stop.what());
    return stop.exit_status();
  } catch (const Error& error) {
    bool input = dynamic_cast<const InputError*>(&error) != nullptr;
    if (error.on_all_ranks()) {
      // Every rank has this error (agreed collectively): rank 0 reports, all end together.
      if (rank == 0) std::fprintf(stderr, "nla %s: %s%s\n", argv[1], input ? "" : "error: ", error.what());
      return input ? 2 : 1;
    }
    if (input && world_size() == 1) std::fprintf(stderr, "nla %s: %s\n", argv[1], error.what());
    else if (input) std::fprintf(stderr, "ERROR on rank %d: %s\n", rank, error.what());
    else std::fprintf(stderr, "ERROR on rank %d: %s [%s]\n", rank, error.what(), error.where().c_str());
    log_debug("raised at %s", error.where().c_str());
    abort_world(input ? 2 : 1);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "ERROR on rank %d: %s\n", rank, first_line(error.what()).c_str());
    abort_world(1);
  }
  // Each rank checks what it wrote; only rank 0 writes results to standard output.
  if (std::string failure = standard_output_failure(); !failure.empty()) {
    std::fprintf(stderr, "nla %s: %s\n", argv[1], failure.c_str());
    return 1;
  }
  return 0;
}

}  // namespace nla::cli
