// See cpu_parallel.hpp. Built as every nla_model source is, with nla_openmp.
#include "nla/model/cpu_parallel.hpp"

#include <ATen/Parallel.h>

#include <atomic>

namespace nla::model {

int64_t parallel_for_threads(int64_t items) {
  // parallel_for splits the range into one chunk per thread, each run by its own thread.
  std::atomic<int64_t> chunks{0};
  at::parallel_for(0, items, 1, [&](int64_t, int64_t) { chunks.fetch_add(1); });
  return chunks.load();
}

}  // namespace nla::model
