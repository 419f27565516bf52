// The Communicator front end: validation, contiguity, and the choice of backend by the
// tensor's device (MPI for CPU; NCCL for CUDA, or MPI through the host where ranks share a
// GPU or there is no NCCL).
#include "nla/dist/communicator.hpp"

#include <ATen/ATen.h>

#include <mutex>
#include <set>
#include <utility>
#include <vector>

#include "backend.hpp"
#include "nla/core/error.hpp"

namespace nla::dist {

namespace {

bool mpi_active() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

// Whether two ranks of `comm` compute on the same GPU (the same node and device index):
// NCCL refuses such a group, so its CUDA tensors go through the host instead. Collective.
bool ranks_share_a_device(MPI_Comm comm, int device) {
  int rank = 0, size = 1;
  NLA_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  NLA_CHECK_MPI(MPI_Comm_size(comm, &size));
  MPI_Comm node = MPI_COMM_NULL;
  NLA_CHECK_MPI(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node));
  int node_leader = rank;  // the node's lowest rank in `comm` names the node
  NLA_CHECK_MPI(MPI_Bcast(&node_leader, 1, MPI_INT, 0, node));
  NLA_CHECK_MPI(MPI_Comm_free(&node));
  const int mine[2] = {node_leader, device};
  std::vector<int> all(2 * static_cast<size_t>(size));
  NLA_CHECK_MPI(MPI_Allgather(mine, 2, MPI_INT, all.data(), 2, MPI_INT, comm));
  std::set<std::pair<int, int>> seen;
  for (int r = 0; r < size; ++r)
    if (!seen.insert({all[2 * static_cast<size_t>(r)], all[2 * static_cast<size_t>(r) + 1]}).second) return true;
  return false;
}

// Runs `op` on a contiguous version of `tensor` and copies the result back when a
// temporary was needed (in-place collectives on strided views).
template <typename Op>
void with_contiguous(at::Tensor& tensor, Op op) {
  if (tensor.is_contiguous()) {
    op(tensor);
  } else {
    at::Tensor dense = tensor.contiguous();
    op(dense);
    tensor.copy_(dense);
  }
}

}  // namespace

struct Communicator::State {
  MPI_Comm comm = MPI_COMM_NULL;
  int rank = 0;
  int size = 1;
  std::unique_ptr<Backend> mpi;
  std::unique_ptr<Backend> cuda;  // NCCL or staged: chosen on the first CUDA collective (collective itself)

  ~State() {
    cuda.reset();  // before the MPI communicator NCCL was bootstrapped over
    if (comm != MPI_COMM_NULL && mpi_active()) MPI_Comm_free(&comm);
  }
};

Communicator Communicator::from_mpi(MPI_Comm comm) {
  auto state = std::make_shared<State>();
  NLA_CHECK_MPI(MPI_Comm_dup(comm, &state->comm));
  NLA_CHECK_MPI(MPI_Comm_set_errhandler(state->comm, MPI_ERRORS_RETURN));
  NLA_CHECK_MPI(MPI_Comm_rank(state->comm, &state->rank));
  NLA_CHECK_MPI(MPI_Comm_size(state->comm, &state->size));
  state->mpi = make_mpi_backend(state->comm);
  return Communicator(std::move(state));
}

Communicator Communicator::world() { return from_mpi(MPI_COMM_WORLD); }

Communicator Communicator::split(int color, int key) const {
  NLA_CHECK(valid(), "split of an empty Communicator");
  MPI_Comm part = MPI_COMM_NULL;
  NLA_CHECK_MPI(MPI_Comm_split(state_->comm, color < 0 ? MPI_UNDEFINED : color, key, &part));
  if (part == MPI_COMM_NULL) return Communicator();
  Communicator result = from_mpi(part);
  NLA_CHECK_MPI(MPI_Comm_free(&part));  // from_mpi keeps its own duplicate
  return result;
}

int Communicator::rank() const { return state_ ? state_->rank : 0; }
int Communicator::size() const { return state_ ? state_->size : 1; }
MPI_Comm Communicator::mpi_comm() const { return state_ ? state_->comm : MPI_COMM_NULL; }

Backend& Communicator::backend_for(const at::Tensor& tensor) const {
  NLA_CHECK(valid(), "collective on an empty Communicator");
  NLA_CHECK(tensor.defined(), "collective on an undefined tensor");
  if (tensor.device().is_cpu()) return *state_->mpi;
  NLA_CHECK(tensor.device().is_cuda(), "collectives support CPU and CUDA tensors, not ", tensor.device().str());
  if (!state_->cuda) {
    const int device = tensor.device().index();
    state_->cuda = nccl_available() && !ranks_share_a_device(state_->comm, device)
                       ? make_nccl_backend(state_->comm, device)
                       : make_staged_backend(*state_->mpi);
  }
  return *state_->cuda;
}

void Communicator::all_reduce(at::Tensor& tensor, ReduceOp op) const {
  Backend& backend = backend_for(tensor);
  with_contiguous(tensor, [&](at::Tensor& dense) { backend.all_reduce(dense, op); });
}

void Communicator::all_gather(const at::Tensor& input, at::Tensor& output) const {
  Backend& backend = backend_for(output);
  NLA_CHECK(input.device() == output.device(), "all_gather: input on ", input.device().str(), ", output on ",
            output.device().str());
  NLA_CHECK(input.scalar_type() == output.scalar_type(), "all_gather: dtypes differ");
  NLA_CHECK(output.numel() == input.numel() * size(), "all_gather: output has ", output.numel(),
            " elements, expected ", size(), " x ", input.numel());
  NLA_CHECK(output.is_contiguous(), "all_gather: output must be contiguous");
  at::Tensor dense_input = input.contiguous();
  backend.all_gather(dense_input, output);
}

void Communicator::reduce_scatter(const at::Tensor& input, at::Tensor& output, ReduceOp op) const {
  Backend& backend = backend_for(output);
  NLA_CHECK(input.device() == output.device(), "reduce_scatter: input on ", input.device().str(), ", output on ",
            output.device().str());
  NLA_CHECK(input.scalar_type() == output.scalar_type(), "reduce_scatter: dtypes differ");
  NLA_CHECK(input.numel() == output.numel() * size(), "reduce_scatter: input has ", input.numel(),
            " elements, expected ", size(), " x ", output.numel());
  at::Tensor dense_input = input.contiguous();
  with_contiguous(output, [&](at::Tensor& dense) { backend.reduce_scatter(dense_input, dense, op); });
}

void Communicator::broadcast(at::Tensor& tensor, int root) const {
  NLA_CHECK(root >= 0 && root < size(), "broadcast: root ", root, " outside the group of ", size());
  Backend& backend = backend_for(tensor);
  with_contiguous(tensor, [&](at::Tensor& dense) { backend.broadcast(dense, root); });
}

void Communicator::send(const at::Tensor& tensor, int dest, int tag) const {
  NLA_CHECK(dest >= 0 && dest < size() && dest != rank(), "send: bad destination ", dest);
  backend_for(tensor).send(tensor.contiguous(), dest, tag);
}

void Communicator::recv(at::Tensor& tensor, int source, int tag) const {
  NLA_CHECK(source >= 0 && source < size() && source != rank(), "recv: bad source ", source);
  Backend& backend = backend_for(tensor);
  with_contiguous(tensor, [&](at::Tensor& dense) { backend.recv(dense, source, tag); });
}

void Communicator::barrier() const {
  NLA_CHECK(valid(), "barrier on an empty Communicator");
  NLA_CHECK_MPI(MPI_Barrier(state_->comm));
}

double Communicator::all_reduce_scalar(double value, ReduceOp op) const {
  NLA_CHECK(valid(), "all_reduce_scalar on an empty Communicator");
  double result = 0;
  NLA_CHECK_MPI(MPI_Allreduce(&value, &result, 1, MPI_DOUBLE, op == ReduceOp::sum ? MPI_SUM : MPI_MAX, state_->comm));
  return result;
}

int local_rank() {
  static int cached = -1;
  static std::once_flag once;
  std::call_once(once, [] {
    MPI_Comm node = MPI_COMM_NULL;
    NLA_CHECK_MPI(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
    NLA_CHECK_MPI(MPI_Comm_rank(node, &cached));
    NLA_CHECK_MPI(MPI_Comm_free(&node));
  });
  return cached;
}

}  // namespace nla::dist
