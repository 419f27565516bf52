#include "nla/cli/threads.hpp"

#include <ATen/Parallel.h>
#include <mpi.h>

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
  log_debug("tensor threads per rank: %d", threads);
}

}  // namespace nla::cli
