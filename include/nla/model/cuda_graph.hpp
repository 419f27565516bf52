// A CUDA graph of one piece of GPU work: captured once, replayed many times with a single
// launch (generation's decode step, NLA_CUDA_GRAPHS=1). Only a CUDA LibTorch build has it;
// elsewhere capture_cuda_graph returns nullptr and callers run the work eagerly.
#pragma once

#include <c10/core/Device.h>

#include <functional>
#include <memory>

namespace nla::model {

class CapturedWork {
 public:
  virtual ~CapturedWork() = default;
  // Runs the captured kernels again on the current stream, reading and writing the same
  // tensors (their contents may change between replays, their storage must not).
  virtual void replay() = 0;
};

// Runs body() once to warm up (cuBLAS handles, workspaces), then captures a second run on a
// side stream. Tensors body() allocates come from the graph's own memory pool and stay valid
// while the returned object lives. nullptr when this build has no CUDA LibTorch.
std::unique_ptr<CapturedWork> capture_cuda_graph(c10::Device device, const std::function<void()>& body);

}  // namespace nla::model
