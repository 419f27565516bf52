// LibTorch's current CUDA stream (only compiled with a CUDA LibTorch: NLA_TORCH_HAS_CUDA).
#include <c10/cuda/CUDAStream.h>

#include "cuda_stream.hpp"

namespace nla::dist {

cudaStream_t current_cuda_stream(const at::Tensor& tensor) {
  return c10::cuda::getCurrentCUDAStream(tensor.device().index()).stream();
}

}  // namespace nla::dist
