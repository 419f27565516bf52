// CPU-only builds: nothing can produce CUDA or NCCL return codes, but the symbols exist
// so that code using the macros behind `#if NLA_WITH_CUDA` links either way.
#include "nla/core/error.hpp"

namespace nla::detail {

void throw_cuda_error(int code, const char* call, const char* file, int line) {
  throw Error(str(call, " failed with CUDA code ", code, " (CPU-only build)"), file, line);
}

void throw_nccl_error(int code, const char* call, const char* file, int line) {
  throw Error(str(call, " failed with NCCL code ", code, " (CPU-only build)"), file, line);
}

}  // namespace nla::detail
