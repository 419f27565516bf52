// CUDA graphs through LibTorch's at::cuda::CUDAGraph (compiled only with a CUDA LibTorch:
// NLA_TORCH_HAS_CUDA). Unverified on a GPU so far: generation uses it only with NLA_CUDA_GRAPHS=1.
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "nla/model/cuda_graph.hpp"

namespace nla::model {

namespace {

class TorchCudaGraph final : public CapturedWork {
 public:
  TorchCudaGraph(c10::Device device, const std::function<void()>& body) {
    c10::cuda::CUDAGuard device_guard(device);
    c10::cuda::device_synchronize();  // the side stream must see everything queued before
    c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device.index());
    {
      c10::cuda::CUDAStreamGuard stream_guard(side);
      body();  // warm-up: no lazy initialisation may happen inside the capture
      side.synchronize();
      graph_.capture_begin();
      body();
      graph_.capture_end();
    }
    c10::cuda::device_synchronize();
  }

  void replay() override { graph_.replay(); }

 private:
  at::cuda::CUDAGraph graph_;
};

}  // namespace

std::unique_ptr<CapturedWork> capture_cuda_graph(c10::Device device, const std::function<void()>& body) {
  return std::make_unique<TorchCudaGraph>(device, body);
}

}  // namespace nla::model
