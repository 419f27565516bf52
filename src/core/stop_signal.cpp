// Stop signals: an atomic flag set by the handler, agreed over the ranks (see stop_signal.hpp).
#include "nla/core/stop_signal.hpp"

#include <atomic>
#include <csignal>

#include "nla/core/error.hpp"
#include "nla/core/log.hpp"

namespace nla {

namespace {

// Written by the handler: only a lock-free atomic is async-signal-safe to touch there.
std::atomic<int> g_received{0};
static_assert(std::atomic<int>::is_always_lock_free, "the stop flag must be lock-free (signal handler)");

constexpr int kStopSignals[] = {SIGTERM, SIGINT, SIGUSR1};
constexpr int kCount = static_cast<int>(sizeof kStopSignals / sizeof kStopSignals[0]);
struct sigaction g_previous[kCount];
bool g_installed = false;

extern "C" void record_stop_signal(int signal) {
  int none = 0;
  g_received.compare_exchange_strong(none, signal);  // the first one is the one reported
}

}  // namespace

StopSignals::StopSignals() {
  NLA_CHECK(!g_installed, "StopSignals: one at a time per process");
  g_received.store(0);
  struct sigaction action = {};
  action.sa_handler = record_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // blocking calls (file writes, MPI progress) carry on
  for (int i = 0; i < kCount; ++i) {
    NLA_CHECK(sigaction(kStopSignals[i], nullptr, &g_previous[i]) == 0, "sigaction: cannot read the handler of ",
              signal_name(kStopSignals[i]));
    if (g_previous[i].sa_handler == SIG_IGN) continue;  // ignored on purpose by whoever started us
    NLA_CHECK(sigaction(kStopSignals[i], &action, nullptr) == 0, "sigaction: cannot handle ",
              signal_name(kStopSignals[i]));
  }
  g_installed = true;
}

StopSignals::~StopSignals() {
  for (int i = 0; i < kCount; ++i) sigaction(kStopSignals[i], &g_previous[i], nullptr);
  g_installed = false;
}

int StopSignals::agreed(MPI_Comm comm) const {
  int mine = g_received.load(), any = 0;
  NLA_CHECK_MPI(MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, comm));
  return any;
}

void end_of_step(const StopSignals& stop, MPI_Comm comm, const StepBoundary& b) {
  int rank = 0;
  NLA_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  if (b.kill_after_steps >= 0 && b.step == b.kill_after_steps && rank == 0) {
    log_warn("%s: --kill-after-steps %lld reached: rank 0 raises %s (a test of resume)", b.command,
             static_cast<long long>(b.kill_after_steps), signal_name(b.kill_signal).c_str());
    if (b.before_kill) b.before_kill();
    std::raise(b.kill_signal);
  }
  if (b.step >= b.steps) return;  // the last step just finishes
  if (const int signal = stop.agreed(comm)) {
    if (!b.saved) b.save();
    throw StoppedBySignal(signal, str("stopped by ", signal_name(signal), " after step ", b.step, " of ", b.steps,
                                      "; checkpoint written to ", b.saved_to, "; rerun the same command to resume"));
  }
}

std::string signal_name(int signal) {
  switch (signal) {
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGUSR1: return "SIGUSR1";
    case SIGKILL: return "SIGKILL";
    default: return "signal " + std::to_string(signal);
  }
}

int signal_from_name(const std::string& name, const char* option) {
  const std::string bare = name.rfind("SIG", 0) == 0 ? name.substr(3) : name;
  if (bare == "TERM") return SIGTERM;
  if (bare == "INT") return SIGINT;
  if (bare == "USR1") return SIGUSR1;
  if (bare == "KILL") return SIGKILL;
  NLA_INPUT_ERROR("option '", option, "': expected KILL, TERM, INT or USR1, got '", name, "'");
}

}  // namespace nla
