// Graceful stop of a training run (train-ar, train-av, grpo) on SIGTERM, SIGINT or SIGUSR1:
// a scheduler's time limit or preemption, Ctrl-C. The run finishes the step it is in, saves
// what a periodic checkpoint saves, and every rank exits with status 128 + signal (143 for
// SIGTERM), so a scheduler or script sees the run is unfinished; rerunning resumes it.
//
// The handler only records the signal in an atomic int. The step loop asks at each step
// boundary with one MPI_Allreduce (MAX) of that int, so every rank stops after the same step
// even when only some ranks were signalled. SIGKILL (or SIGQUIT) still ends a run at once.
//
// Launchers: srun turns SIGTERM into SIGKILL for its tasks and mpirun follows the SIGTERM
// it forwards with SIGKILL one second later; both pass SIGUSR1 on to every rank untouched,
// so job scripts hand a stop to the ranks as SIGUSR1 (jobs/lib.sh, slurm/grpo.sh).
#pragma once

#include <mpi.h>

#include <csignal>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>

namespace nla {

// While alive, SIGTERM, SIGINT and SIGUSR1 set the stop flag instead of ending the process
// (a signal that was ignored when nla started, e.g. SIGINT of a background job, stays
// ignored). The previous handlers come back on destruction. One at a time per process.
class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  // The stop signal received so far by any rank of `comm` (the largest number when ranks
  // got different ones), 0 for none. Collective over comm: every rank asks at the same point.
  int agreed(MPI_Comm comm) const;
};

// Thrown on every rank, at the same step, once a run has stopped on a signal and saved its
// state: run_main prints what() on rank 0 and every rank exits with exit_status().
class StoppedBySignal : public std::runtime_error {
 public:
  StoppedBySignal(int signal, const std::string& message) : std::runtime_error(message), signal_(signal) {}
  int signal() const { return signal_; }
  int exit_status() const { return 128 + signal_; }

 private:
  int signal_;
};

// The end of one step of a training loop (train-ar, train-av, grpo), the same on every rank.
struct StepBoundary {
  const char* command = "";       // "train-av", "grpo": names the log line
  int64_t step = 0;               // steps done, 1-based
  int64_t steps = 0;              // of the whole run
  bool saved = false;             // this step's checkpoint is already written
  std::function<void()> save;     // writes it (collective)
  std::string saved_to;           // where save() writes, for the stop message
  std::function<void()> before_kill;  // rank 0, before it raises kill_signal (e.g. flush metrics)
  int64_t kill_after_steps = -1;  // tests of resume: rank 0 raises kill_signal after this step
  int kill_signal = SIGKILL;
};

// Collective over comm at a step boundary. First the resume test's kill, if due. Then,
// unless this was the last step, a stop signal received by any rank stops every rank here:
// the step's checkpoint is written (unless `saved`) and StoppedBySignal is thrown.
void end_of_step(const StopSignals& stop, MPI_Comm comm, const StepBoundary& boundary);

// "SIGTERM", "SIGINT", "SIGUSR1", "SIGKILL"; other numbers as "signal N".
std::string signal_name(int signal);
// "TERM" or "SIGTERM" (also INT, USR1, KILL) -> the number; InputError naming `option` otherwise.
int signal_from_name(const std::string& name, const char* option);

}  // namespace nla
