#include "nla/cli/threads.hpp"

#include <ATen/Parallel.h>
#include <mpi.h>

#include <dlfcn.h>

#include <cstdlib>
#include <thread>

#include "nla/core/error.hpp"
#include "nla/core/log.hpp"

namespace nla::cli {

static int ranks_on_this_node() {
  MPI_Comm node;
  NLA_CHECK_MPI(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  int size = 1;
  NLA_CHECK_MPI(MPI_Comm_size(node, &size));
  NLA_CHECK_MPI(MPI_Comm_free(&node));
  return size;
}

void configure_threads(int threads) {
  if (threads <= 0) {
    if (const char* env = std::getenv("OMP_NUM_THREADS")) threads = std::atoi(env);
  }
  if (threads <= 0) {
    int cores = static_cast<int>(std::thread::hardware_concurrency());
    threads = std::max(1, cores / std::max(1, ranks_on_this_node()));
  }
  at::set_num_threads(threads);
  // OpenBLAS (Debian's BLAS behind LibTorch) keeps its own thread pool, sized from the
  // cores it sees (the launcher's binding changes that). Pin it too: results then depend
  // only on --threads, not on how the job was launched.
  using SetThreads = void (*)(int);
  if (auto set_openblas = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads")))
    set_openblas(threads);
  log_debug("tensor threads per rank: %d", threads);
}

}  // namespace nla::cli
