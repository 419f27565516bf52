#include "nla/core/error.hpp"

#include <hdf5.h>
#include <mpi.h>

#include <cstring>

namespace nla {

std::string Error::where() const {
  // Shorten absolute build paths to the part inside the repository.
  std::string file = source_file_ ? source_file_ : "?";
  for (const char* marker : {"/src/", "/include/", "/tests/"}) {
    auto pos = file.rfind(marker);
    if (pos != std::string::npos) {
      file = file.substr(pos + 1);
      break;
    }
  }
  return str(file, ":", source_line_);
}

namespace detail {

void throw_mpi_error(int code, const char* call, const char* file, int line) {
  char text[MPI_MAX_ERROR_STRING] = {0};
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) std::strcpy(text, "unknown MPI error");
  throw Error(str(call, " failed: ", text, " (code ", code, ")"), file, line);
}

// Walks the HDF5 error stack and keeps its innermost description.
static herr_t collect_h5_message(unsigned depth, const H5E_error2_t* entry, void* out) {
  auto* message = static_cast<std::string*>(out);
  if (entry && entry->desc && message->empty()) *message = entry->desc;
  return 0;
}

void throw_h5_error(const char* call, const char* file, int line) {
  std::string message;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, collect_h5_message, &message);
  H5Eclear2(H5E_DEFAULT);
  throw Error(str(call, " failed", message.empty() ? "" : ": ", message), file, line);
}

}  // namespace detail
}  // namespace nla
