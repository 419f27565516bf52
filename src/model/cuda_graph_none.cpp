// Builds without a CUDA LibTorch: nothing to capture, callers run their work eagerly.
#include "nla/model/cuda_graph.hpp"

namespace nla::model {

std::unique_ptr<CapturedWork> capture_cuda_graph(c10::Device, const std::function<void()>&) { return nullptr; }

}  // namespace nla::model
