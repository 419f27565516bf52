// Collectives over a group of ranks, one interface for CPU and CUDA tensors.
//
// A Communicator wraps an MPI communicator (its own duplicate, freed with the last copy).
// Each call picks its backend from the tensor's device, never from the caller:
//   - CPU tensors: MPI. float32/float64/int32/int64/uint8 map to MPI types; bfloat16 and
//     float16 have none, so they move as raw 16-bit words and are reduced in float32
//     (converted, reduced, converted back: one rounding at the end).
//   - CUDA tensors: NCCL, created on first use from a unique id made on rank 0 and
//     broadcast over the MPI communicator; calls are enqueued on the tensor's current
//     stream (stream-ordered, as LibTorch ops are). Only in builds with NLA_WITH_CUDA.
//     Where two ranks of the group share a GPU (NCCL refuses that: e.g. GRPO's split
//     layout on a one-GPU machine), or the build has no NCCL, CUDA tensors go through the
//     MPI path by host copies instead (blocking, slower, the same results).
// Every call is collective over the group (send/recv are point-to-point): all ranks call
// it in the same order with tensors of the same dtype, device kind and size.
//
// Sub-groups (the GRPO rollout/reward/trainer roles) come from split(), MPI_Comm_split.
#pragma once

#include <ATen/core/Tensor.h>
#include <mpi.h>

#include <memory>

namespace nla::dist {

enum class ReduceOp { sum, max };

class Backend;  // communicator.cpp: one per device kind

class Communicator {
 public:
  // A duplicate of MPI_COMM_WORLD (so nla's traffic never matches a user's messages).
  // Collective over the world.
  static Communicator world();
  // Wraps a duplicate of `comm` (collective over it); the caller keeps `comm` itself.
  static Communicator from_mpi(MPI_Comm comm);

  Communicator() = default;  // empty: usable only after assignment
  bool valid() const { return static_cast<bool>(state_); }

  // Ranks with the same `color` form a new group, ordered by `key` (then by rank here).
  // Collective over this group. color < 0 (MPI_UNDEFINED): this rank joins no group and
  // gets an invalid Communicator.
  Communicator split(int color, int key) const;

  int rank() const;
  int size() const;
  MPI_Comm mpi_comm() const;

  // In place on every rank.
  void all_reduce(at::Tensor& tensor, ReduceOp op = ReduceOp::sum) const;
  // input (n) on every rank -> output (size * n), rank r's input at [r * n, (r + 1) * n).
  // Shapes are ignored (flat element counts); `input` may be output's own chunk.
  void all_gather(const at::Tensor& input, at::Tensor& output) const;
  // input (size * n) on every rank -> output (n): the sum over ranks of input[rank * n ..].
  void reduce_scatter(const at::Tensor& input, at::Tensor& output, ReduceOp op = ReduceOp::sum) const;
  // root's tensor -> every rank's tensor (same element count).
  void broadcast(at::Tensor& tensor, int root) const;
  // Blocking point-to-point within this group (CUDA: stream-ordered, grouped per call).
  void send(const at::Tensor& tensor, int dest, int tag = 0) const;
  void recv(at::Tensor& tensor, int source, int tag = 0) const;
  void barrier() const;

  // Convenience: sum/max of one double over the group (CPU, MPI).
  double all_reduce_scalar(double value, ReduceOp op = ReduceOp::sum) const;

 private:
  struct State;
  explicit Communicator(std::shared_ptr<State> state) : state_(std::move(state)) {}
  Backend& backend_for(const at::Tensor& tensor) const;
  std::shared_ptr<State> state_;
};

// Rank among the ranks of this node (MPI_COMM_TYPE_SHARED): the CUDA device to use is
// local_rank() % device count ("one device per local rank"). Collective over the world
// on its first call (cached after).
int local_rank();

}  // namespace nla::dist
