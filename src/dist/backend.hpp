// The backends behind nla::dist::Communicator (internal to nla_dist). The front end
// (communicator.cpp) validates sizes and dtypes and hands over contiguous tensors; a
// backend only moves bytes.
#pragma once

#include <ATen/core/Tensor.h>
#include <mpi.h>

#include <memory>

#include "nla/dist/communicator.hpp"

namespace nla::dist {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual void all_reduce(at::Tensor& tensor, ReduceOp op) = 0;
  virtual void all_gather(const at::Tensor& input, at::Tensor& output) = 0;
  virtual void reduce_scatter(const at::Tensor& input, at::Tensor& output, ReduceOp op) = 0;
  virtual void broadcast(at::Tensor& tensor, int root) = 0;
  virtual void send(const at::Tensor& tensor, int dest, int tag) = 0;
  virtual void recv(at::Tensor& tensor, int source, int tag) = 0;
};

// CPU tensors over `comm` (not owned).
std::unique_ptr<Backend> make_mpi_backend(MPI_Comm comm);
// CUDA tensors on device `device_index`; collective over `comm` (the NCCL id travels over
// it). Throws in builds without NLA_WITH_CUDA.
std::unique_ptr<Backend> make_nccl_backend(MPI_Comm comm, int device_index);
// CUDA tensors through host copies and `host` (the MPI backend, which must outlive it):
// for ranks that share a GPU, where NCCL cannot run, and for builds without NCCL.
std::unique_ptr<Backend> make_staged_backend(Backend& host);
// Whether this build has NCCL (NLA_WITH_CUDA).
bool nccl_available();

}  // namespace nla::dist
