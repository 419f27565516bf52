// The MPI backend: CPU tensors. 16-bit floats have no MPI type: they move as raw 16-bit
// words and are reduced in float32 (one rounding back at the end).
#include <ATen/ATen.h>
#include <mpi.h>

#include <climits>

#include "backend.hpp"
#include "nla/core/error.hpp"

namespace nla::dist {

namespace {

bool is_16bit_float(c10::ScalarType dtype) { return dtype == at::kBFloat16 || dtype == at::kHalf; }

// The MPI type that moves the bytes of `dtype` (16-bit floats as raw words).
MPI_Datatype mpi_type(c10::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat: return MPI_FLOAT;
    case at::kDouble: return MPI_DOUBLE;
    case at::kInt: return MPI_INT32_T;
    case at::kLong: return MPI_INT64_T;
    case at::kByte: return MPI_UINT8_T;
    case at::kChar: return MPI_INT8_T;
    case at::kBool: return MPI_UINT8_T;
    case at::kBFloat16:
    case at::kHalf: return MPI_UINT16_T;
    default: NLA_THROW("MPI backend: no MPI type for ", c10::toString(dtype));
  }
}

MPI_Op mpi_op(ReduceOp op) { return op == ReduceOp::sum ? MPI_SUM : MPI_MAX; }

// MPI counts are int: larger messages are refused rather than silently truncated.
int mpi_count(int64_t numel) {
  NLA_CHECK(numel <= INT_MAX, "MPI backend: ", numel, " elements in one message (limit ", INT_MAX, ")");
  return static_cast<int>(numel);
}

class MpiBackend final : public Backend {
 public:
  explicit MpiBackend(MPI_Comm comm) : comm_(comm) {
    NLA_CHECK_MPI(MPI_Comm_rank(comm_, &rank_));
  }

  void all_reduce(at::Tensor& tensor, ReduceOp op) override {
    NLA_CHECK(tensor.scalar_type() != at::kBool, "all_reduce of bool tensors");
    if (is_16bit_float(tensor.scalar_type())) {
      at::Tensor wide = tensor.to(at::kFloat);  // (n) float32
      all_reduce(wide, op);
      tensor.copy_(wide);
      return;
    }
    NLA_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, tensor.data_ptr(), mpi_count(tensor.numel()),
                                mpi_type(tensor.scalar_type()), mpi_op(op), comm_));
  }

  void all_gather(const at::Tensor& input, at::Tensor& output) override {
    const int count = mpi_count(input.numel());
    const MPI_Datatype type = mpi_type(input.scalar_type());
    auto* own_chunk = static_cast<char*>(output.data_ptr()) + static_cast<int64_t>(rank_) * input.nbytes();
    const void* send = input.data_ptr() == own_chunk ? MPI_IN_PLACE : input.data_ptr();
    NLA_CHECK_MPI(MPI_Allgather(send, count, type, output.data_ptr(), count, type, comm_));
  }

  void reduce_scatter(const at::Tensor& input, at::Tensor& output, ReduceOp op) override {
    NLA_CHECK(input.scalar_type() != at::kBool, "reduce_scatter of bool tensors");
    if (is_16bit_float(input.scalar_type())) {
      at::Tensor wide_in = input.to(at::kFloat);                 // (size * n)
      at::Tensor wide_out = at::empty({output.numel()}, wide_in.options());  // (n)
      reduce_scatter(wide_in, wide_out, op);
      output.view({-1}).copy_(wide_out);
      return;
    }
    NLA_CHECK_MPI(MPI_Reduce_scatter_block(input.data_ptr(), output.data_ptr(), mpi_count(output.numel()),
                                           mpi_type(input.scalar_type()), mpi_op(op), comm_));
  }

  void broadcast(at::Tensor& tensor, int root) override {
    NLA_CHECK_MPI(MPI_Bcast(tensor.data_ptr(), mpi_count(tensor.numel()), mpi_type(tensor.scalar_type()), root, comm_));
  }

  void send(const at::Tensor& tensor, int dest, int tag) override {
    NLA_CHECK_MPI(MPI_Send(tensor.data_ptr(), mpi_count(tensor.numel()), mpi_type(tensor.scalar_type()), dest, tag,
                           comm_));
  }

  void recv(at::Tensor& tensor, int source, int tag) override {
    MPI_Status status;
    NLA_CHECK_MPI(MPI_Recv(tensor.data_ptr(), mpi_count(tensor.numel()), mpi_type(tensor.scalar_type()), source, tag,
                           comm_, &status));
    int received = 0;
    NLA_CHECK_MPI(MPI_Get_count(&status, mpi_type(tensor.scalar_type()), &received));
    NLA_CHECK(received == tensor.numel(), "recv from rank ", source, ": ", received, " elements, expected ",
              tensor.numel());
  }

 private:
  MPI_Comm comm_;
  int rank_ = 0;
};

}  // namespace

std::unique_ptr<Backend> make_mpi_backend(MPI_Comm comm) { return std::make_unique<MpiBackend>(comm); }

}  // namespace nla::dist
