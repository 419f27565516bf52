// Errors. Library code throws; only main() decides how the job ends.
//
//   nla::Error       an internal failure (a bug, a failed system/MPI/HDF5/CUDA call).
//                    main() prints "ERROR on rank r: ..." and aborts the whole job.
//   nla::InputError  bad usage or bad input (a file, a field, an option). The message is
//                    one line naming the file, the field and what was expected; the job
//                    exits with status 2.
//
// Every error carries the source file:line that raised it (shown at --log-level debug).
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace nla {

class Error : public std::runtime_error {
 public:
  Error(const std::string& message, const char* source_file, int source_line)
      : std::runtime_error(message), source_file_(source_file), source_line_(source_line) {}
  const char* source_file() const { return source_file_; }
  int source_line() const { return source_line_; }
  // "src/core/log.cpp:42"
  std::string where() const;
  // Set when every rank of the job raised this same error together (run_on_root over
  // the world): then rank 0 alone reports it and the job ends without MPI_Abort.
  bool on_all_ranks() const { return on_all_ranks_; }
  void set_on_all_ranks(bool value) { on_all_ranks_ = value; }

 private:
  const char* source_file_;
  int source_line_;
  bool on_all_ranks_ = false;
};

class InputError : public Error {
 public:
  using Error::Error;
};

// str(a, b, c): concatenates anything streamable; used to build messages.
template <typename... Args>
std::string str(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

namespace detail {
[[noreturn]] void throw_mpi_error(int code, const char* call, const char* file, int line);
[[noreturn]] void throw_h5_error(const char* call, const char* file, int line);
[[noreturn]] void throw_cuda_error(int code, const char* call, const char* file, int line);
[[noreturn]] void throw_nccl_error(int code, const char* call, const char* file, int line);
}  // namespace detail

}  // namespace nla

// Throw an internal error / an input error with a message built by nla::str(...).
#define NLA_THROW(...) throw ::nla::Error(::nla::str(__VA_ARGS__), __FILE__, __LINE__)
#define NLA_INPUT_ERROR(...) throw ::nla::InputError(::nla::str(__VA_ARGS__), __FILE__, __LINE__)

// Invariant checks: NLA_CHECK for bugs, NLA_CHECK_INPUT for user-facing validation.
#define NLA_CHECK(cond, ...) \
  do { if (!(cond)) NLA_THROW("check failed: " #cond ": ", __VA_ARGS__); } while (0)
#define NLA_CHECK_INPUT(cond, ...) \
  do { if (!(cond)) NLA_INPUT_ERROR(__VA_ARGS__); } while (0)

// Checked calls. The including file must include the library's own header (mpi.h,
// hdf5.h, cuda_runtime.h, nccl.h); this header stays free of them.
#define NLA_CHECK_MPI(call)                                                          \
  do {                                                                               \
    int nla_mpi_rc_ = (call);                                                        \
    if (nla_mpi_rc_ != MPI_SUCCESS)                                                  \
      ::nla::detail::throw_mpi_error(nla_mpi_rc_, #call, __FILE__, __LINE__);        \
  } while (0)

// HDF5 calls return a negative herr_t / hid_t on failure; the value is passed through.
#define NLA_CHECK_H5(call)                                                           \
  ([&]() {                                                                           \
    auto nla_h5_rc_ = (call);                                                        \
    if (nla_h5_rc_ < 0) ::nla::detail::throw_h5_error(#call, __FILE__, __LINE__);    \
    return nla_h5_rc_;                                                               \
  }())

#define NLA_CHECK_CUDA(call)                                                         \
  do {                                                                               \
    auto nla_cuda_rc_ = (call);                                                      \
    if (nla_cuda_rc_ != cudaSuccess)                                                 \
      ::nla::detail::throw_cuda_error(static_cast<int>(nla_cuda_rc_), #call, __FILE__, __LINE__); \
  } while (0)

#define NLA_CHECK_NCCL(call)                                                         \
  do {                                                                               \
    auto nla_nccl_rc_ = (call);                                                      \
    if (nla_nccl_rc_ != ncclSuccess)                                                 \
      ::nla::detail::throw_nccl_error(static_cast<int>(nla_nccl_rc_), #call, __FILE__, __LINE__); \
  } while (0)
