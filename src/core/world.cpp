#include "nla/core/world.hpp"

#include <mpi.h>

#include <cstdio>
#include <cstdlib>

#include "nla/core/error.hpp"

namespace nla {

static bool mpi_active() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

int world_rank() {
  if (!mpi_active()) return 0;
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

int world_size() {
  if (!mpi_active()) return 1;
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

MpiSession::MpiSession(int* argc, char*** argv) {
  int provided = 0;
  // FUNNELED: only the main thread calls MPI; worker threads (OpenMP, LibTorch) do not.
  NLA_CHECK_MPI(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
  // Errors come back as return codes, which NLA_CHECK_MPI turns into exceptions.
  NLA_CHECK_MPI(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
}

MpiSession::~MpiSession() {
  if (mpi_active()) MPI_Finalize();
}

void abort_world(int exit_code) {
  std::fflush(stdout);
  std::fflush(stderr);
  if (mpi_active() && world_size() > 1) MPI_Abort(MPI_COMM_WORLD, exit_code);
  if (mpi_active()) MPI_Finalize();
  std::exit(exit_code);
}

}  // namespace nla
