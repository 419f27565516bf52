// Builds without NCCL (NLA_CUDA=OFF): CUDA tensors, if LibTorch has them, take the staged
// MPI path (communicator.cpp asks nccl_available()), so reaching make_nccl_backend is a bug.
#include "backend.hpp"
#include "nla/core/error.hpp"

namespace nla::dist {

bool nccl_available() { return false; }

std::unique_ptr<Backend> make_nccl_backend(MPI_Comm /*comm*/, int /*device_index*/) {
  NLA_THROW("CUDA tensor given to a Communicator, but nla was built without CUDA/NCCL (NLA_CUDA=OFF)");
}

}  // namespace nla::dist
