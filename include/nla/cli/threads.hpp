// CPU threads for tensor math. 0 picks OMP_NUM_THREADS when set, else the cores of this
// node divided by the ranks on it (so several ranks do not oversubscribe the cores).
#pragma once

namespace nla::cli {

void configure_threads(int threads);

}  // namespace nla::cli
