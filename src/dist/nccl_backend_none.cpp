// Builds without CUDA: there are no CUDA tensors, so reaching this is a bug.
#include "backend.hpp"
#include "nla/core/error.hpp"

namespace nla::dist {

std::unique_ptr<Backend> make_nccl_backend(MPI_Comm /*comm*/, int /*device_index*/) {
  NLA_THROW("CUDA tensor given to a Communicator, but nla was built without CUDA/NCCL (NLA_CUDA=OFF)");
}

}  // namespace nla::dist
