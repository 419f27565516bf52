// The MPI world as the rest of nla sees it: rank, size, and "am I rank 0".
// MPI is initialised once by main() (MpiSession); every nla binary is an MPI program,
// also when started without a launcher (a singleton of size 1).
#pragma once

#include <mpi.h>

#include <functional>

namespace nla {

int world_rank();   // 0 when MPI is not initialised
int world_size();   // 1 when MPI is not initialised
inline bool is_root() { return world_rank() == 0; }

// RAII: MPI_Init_thread on construction, MPI_Finalize on destruction.
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
};

// Runs `work` on rank 0 of `comm` only; an exception there is re-thrown on every rank of
// `comm` (an InputError stays an InputError), so the ranks leave a collective section
// together instead of waiting for a rank that failed. Collective.
void run_on_root(MPI_Comm comm, const std::function<void()>& work);

// Runs `work` (local: no collectives inside) on every rank of `comm`; if it fails anywhere,
// the lowest failing rank's error is re-thrown on every rank, marked as seen by all, so one
// line is printed for the job (rank 0 speaks) instead of one per rank. Collective.
void run_on_every_rank(MPI_Comm comm, const std::function<void()>& work);

// Ends every rank of the job now with `exit_code` (MPI_Abort when size > 1, else exit).
[[noreturn]] void abort_world(int exit_code);

}  // namespace nla
