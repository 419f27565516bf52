#include "nla/core/world.hpp"

#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

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

namespace {

// Throws `message` (kind 1: InputError, 2: Error) on this rank, marked as seen by every rank
// of the world when `comm` is the world.
[[noreturn]] void throw_agreed(MPI_Comm comm, int kind, const std::string& message) {
  int comparison = MPI_UNEQUAL;
  NLA_CHECK_MPI(MPI_Comm_compare(comm, MPI_COMM_WORLD, &comparison));
  const bool whole_world = comparison == MPI_IDENT || comparison == MPI_CONGRUENT;
  if (kind == 1) {
    InputError error(message, __FILE__, __LINE__);
    error.set_on_all_ranks(whole_world);
    throw error;
  }
  Error error(message, __FILE__, __LINE__);
  error.set_on_all_ranks(whole_world);
  throw error;
}

// kind 0 ok, 1 input error, 2 other error; the message of a failure.
std::pair<int, std::string> run_catching(const std::function<void()>& work) {
  try {
    work();
  } catch (const InputError& error) {
    return {1, error.what()};
  } catch (const std::exception& error) {
    return {2, error.what()};
  }
  return {0, ""};
}

// `source`'s kind and message on every rank of comm.
void broadcast_failure(MPI_Comm comm, int source, int& kind, std::string& message) {
  NLA_CHECK_MPI(MPI_Bcast(&kind, 1, MPI_INT, source, comm));
  int length = static_cast<int>(message.size());
  NLA_CHECK_MPI(MPI_Bcast(&length, 1, MPI_INT, source, comm));
  message.resize(static_cast<size_t>(length));
  NLA_CHECK_MPI(MPI_Bcast(message.data(), length, MPI_CHAR, source, comm));
}

}  // namespace

void run_on_root(MPI_Comm comm, const std::function<void()>& work) {
  int rank = 0;
  NLA_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  auto [kind, message] = rank == 0 ? run_catching(work) : std::pair<int, std::string>{0, ""};
  NLA_CHECK_MPI(MPI_Bcast(&kind, 1, MPI_INT, 0, comm));
  if (kind == 0) return;
  broadcast_failure(comm, 0, kind, message);
  throw_agreed(comm, kind, message);
}

void run_on_every_rank(MPI_Comm comm, const std::function<void()>& work) {
  int rank = 0, size = 1;
  NLA_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  NLA_CHECK_MPI(MPI_Comm_size(comm, &size));
  auto [kind, message] = run_catching(work);
  int candidate = kind != 0 ? rank : size, lowest = size;
  NLA_CHECK_MPI(MPI_Allreduce(&candidate, &lowest, 1, MPI_INT, MPI_MIN, comm));
  if (lowest == size) return;
  broadcast_failure(comm, lowest, kind, message);
  throw_agreed(comm, kind, message);
}

void abort_world(int exit_code) {
  std::fflush(stdout);
  std::fflush(stderr);
  if (mpi_active() && world_size() > 1) MPI_Abort(MPI_COMM_WORLD, exit_code);
  if (mpi_active()) MPI_Finalize();
  std::exit(exit_code);
}

}  // namespace nla
