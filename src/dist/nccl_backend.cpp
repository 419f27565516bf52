// The NCCL backend: CUDA tensors. Compiled only with NLA_WITH_CUDA. Written against the
// CUDA runtime and NCCL C APIs with the tensor's data pointer, so it builds with any
// LibTorch; the stream comes from cuda_stream.hpp (LibTorch's current stream when
// LibTorch has CUDA). Calls are asynchronous on that stream, as LibTorch ops are.
#include <cuda_runtime.h>
#include <nccl.h>

#include <ATen/core/Tensor.h>

#include "backend.hpp"
#include "cuda_stream.hpp"
#include "nla/core/error.hpp"

namespace nla::dist {

namespace {

ncclDataType_t nccl_type(c10::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat: return ncclFloat32;
    case at::kDouble: return ncclFloat64;
    case at::kHalf: return ncclFloat16;
    case at::kBFloat16: return ncclBfloat16;
    case at::kInt: return ncclInt32;
    case at::kLong: return ncclInt64;
    case at::kByte:
    case at::kBool: return ncclUint8;
    case at::kChar: return ncclInt8;
    default: NLA_THROW("NCCL backend: no NCCL type for ", c10::toString(dtype));
  }
}

ncclRedOp_t nccl_op(ReduceOp op) { return op == ReduceOp::sum ? ncclSum : ncclMax; }

// Makes `device` current for the scope of one call, restoring the caller's device.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    NLA_CHECK_CUDA(cudaGetDevice(&previous_));
    if (previous_ != device) NLA_CHECK_CUDA(cudaSetDevice(device));
  }
  ~DeviceScope() { cudaSetDevice(previous_); }  // no throw from a destructor
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = 0;
};

class NcclBackend final : public Backend {
 public:
  NcclBackend(MPI_Comm comm, int device) : device_(device) {
    int rank = 0, size = 1;
    NLA_CHECK_MPI(MPI_Comm_rank(comm, &rank));
    NLA_CHECK_MPI(MPI_Comm_size(comm, &size));
    // Rank 0 makes the id; the others learn it over MPI (the usual NCCL bootstrap).
    ncclUniqueId id;
    int ok = 1;
    if (rank == 0) ok = ncclGetUniqueId(&id) == ncclSuccess ? 1 : 0;
    NLA_CHECK_MPI(MPI_Bcast(&ok, 1, MPI_INT, 0, comm));
    NLA_CHECK(ok == 1, "ncclGetUniqueId failed on rank 0 of the group");
    NLA_CHECK_MPI(MPI_Bcast(&id, static_cast<int>(sizeof id), MPI_BYTE, 0, comm));
    DeviceScope scope(device_);
    NLA_CHECK_NCCL(ncclCommInitRank(&comm_, size, id, rank));
  }
  ~NcclBackend() override {
    if (comm_) ncclCommDestroy(comm_);
  }

  void all_reduce(at::Tensor& tensor, ReduceOp op) override {
    DeviceScope scope(check_device(tensor));
    NLA_CHECK_NCCL(ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), n(tensor), nccl_type(tensor.scalar_type()),
                                 nccl_op(op), comm_, current_cuda_stream(tensor)));
  }

  void all_gather(const at::Tensor& input, at::Tensor& output) override {
    DeviceScope scope(check_device(output));
    check_device(input);
    // In place when input is output's own chunk: NCCL detects that itself.
    NLA_CHECK_NCCL(ncclAllGather(input.data_ptr(), output.data_ptr(), n(input), nccl_type(input.scalar_type()), comm_,
                                 current_cuda_stream(output)));
  }

  void reduce_scatter(const at::Tensor& input, at::Tensor& output, ReduceOp op) override {
    DeviceScope scope(check_device(output));
    check_device(input);
    NLA_CHECK_NCCL(ncclReduceScatter(input.data_ptr(), output.data_ptr(), n(output), nccl_type(input.scalar_type()),
                                     nccl_op(op), comm_, current_cuda_stream(output)));
  }

  void broadcast(at::Tensor& tensor, int root) override {
    DeviceScope scope(check_device(tensor));
    NLA_CHECK_NCCL(ncclBroadcast(tensor.data_ptr(), tensor.data_ptr(), n(tensor), nccl_type(tensor.scalar_type()),
                                 root, comm_, current_cuda_stream(tensor)));
  }

  void send(const at::Tensor& tensor, int dest, int /*tag*/) override {
    // NCCL has no tags: messages between a pair of ranks match in call order.
    DeviceScope scope(check_device(tensor));
    NLA_CHECK_NCCL(ncclSend(tensor.data_ptr(), n(tensor), nccl_type(tensor.scalar_type()), dest, comm_,
                            current_cuda_stream(tensor)));
  }

  void recv(at::Tensor& tensor, int source, int /*tag*/) override {
    DeviceScope scope(check_device(tensor));
    NLA_CHECK_NCCL(ncclRecv(tensor.data_ptr(), n(tensor), nccl_type(tensor.scalar_type()), source, comm_,
                            current_cuda_stream(tensor)));
  }

 private:
  static size_t n(const at::Tensor& tensor) { return static_cast<size_t>(tensor.numel()); }
  // One NCCL communicator is bound to one device.
  int check_device(const at::Tensor& tensor) const {
    NLA_CHECK(tensor.device().index() == device_, "NCCL communicator is on cuda:", device_, " but the tensor is on ",
              tensor.device().str());
    return device_;
  }

  int device_ = 0;
  ncclComm_t comm_ = nullptr;
};

}  // namespace

bool nccl_available() { return true; }

std::unique_ptr<Backend> make_nccl_backend(MPI_Comm comm, int device_index) {
  return std::make_unique<NcclBackend>(comm, device_index);
}

}  // namespace nla::dist
