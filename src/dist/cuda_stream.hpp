// The CUDA stream a collective on a tensor is enqueued on (internal to nla_dist).
#pragma once

#include <ATen/core/Tensor.h>
#include <cuda_runtime.h>

namespace nla::dist {

// LibTorch's current stream of the tensor's device (cuda_stream_torch.cpp, CUDA LibTorch);
// the legacy default stream otherwise (cuda_stream_default.cpp, where no LibTorch CUDA
// tensors can exist: it lets the NCCL backend compile against a CPU LibTorch).
cudaStream_t current_cuda_stream(const at::Tensor& tensor);

}  // namespace nla::dist
