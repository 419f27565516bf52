// CUDA toolkit but CPU LibTorch: no LibTorch stream exists; use the legacy default stream.
#include "cuda_stream.hpp"

namespace nla::dist {

cudaStream_t current_cuda_stream(const at::Tensor& /*tensor*/) { return cudaStreamLegacy; }

}  // namespace nla::dist
