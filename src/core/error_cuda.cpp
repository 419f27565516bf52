// Compiled only in CUDA builds (NLA_WITH_CUDA): the messages need the CUDA and NCCL runtimes.
#include <cuda_runtime.h>
#include <nccl.h>

#include "nla/core/error.hpp"

namespace nla::detail {

void throw_cuda_error(int code, const char* call, const char* file, int line) {
  throw Error(str(call, " failed: ", cudaGetErrorString(static_cast<cudaError_t>(code)),
                  " (code ", code, ")"),
              file, line);
}

void throw_nccl_error(int code, const char* call, const char* file, int line) {
  throw Error(str(call, " failed: ", ncclGetErrorString(static_cast<ncclResult_t>(code)),
                  " (code ", code, ")"),
              file, line);
}

}  // namespace nla::detail
