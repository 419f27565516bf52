// CUDA tensors over MPI through host copies: the path for groups whose ranks share a GPU
// (NCCL refuses two ranks on one device: a 1-GPU workstation running GRPO's split layout,
// or tests) and for builds without NCCL. Each call copies to the host (a blocking copy, so
// it waits for the work queued on the tensor), runs the MPI backend, and copies back.
#include <ATen/ATen.h>

#include "backend.hpp"

namespace nla::dist {

namespace {

class StagedBackend final : public Backend {
 public:
  explicit StagedBackend(Backend& host) : host_(host) {}

  void all_reduce(at::Tensor& tensor, ReduceOp op) override {
    at::Tensor staged = tensor.to(at::kCPU);
    host_.all_reduce(staged, op);
    tensor.copy_(staged);
  }
  void all_gather(const at::Tensor& input, at::Tensor& output) override {
    at::Tensor staged_input = input.to(at::kCPU);
    at::Tensor staged_output = at::empty(output.sizes(), output.options().device(at::kCPU));
    host_.all_gather(staged_input, staged_output);
    output.copy_(staged_output);
  }
  void reduce_scatter(const at::Tensor& input, at::Tensor& output, ReduceOp op) override {
    at::Tensor staged_input = input.to(at::kCPU);
    at::Tensor staged_output = at::empty(output.sizes(), output.options().device(at::kCPU));
    host_.reduce_scatter(staged_input, staged_output, op);
    output.copy_(staged_output);
  }
  void broadcast(at::Tensor& tensor, int root) override {
    at::Tensor staged = tensor.to(at::kCPU);
    host_.broadcast(staged, root);
    tensor.copy_(staged);
  }
  void send(const at::Tensor& tensor, int dest, int tag) override {
    host_.send(tensor.to(at::kCPU), dest, tag);
  }
  void recv(at::Tensor& tensor, int source, int tag) override {
    at::Tensor staged = at::empty(tensor.sizes(), tensor.options().device(at::kCPU));
    host_.recv(staged, source, tag);
    tensor.copy_(staged);
  }

 private:
  Backend& host_;
};

}  // namespace

std::unique_ptr<Backend> make_staged_backend(Backend& host) { return std::make_unique<StagedBackend>(host); }

}  // namespace nla::dist
