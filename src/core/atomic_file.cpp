#include "nla/core/atomic_file.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/core/version.hpp"

namespace nla {

AtomicFile::AtomicFile(std::string path, bool binary)
    : path_(std::move(path)), temp_path_(path_ + ".tmp." + std::to_string(getpid())) {
  out_.open(temp_path_, binary ? std::ios::out | std::ios::binary | std::ios::trunc
                               : std::ios::out | std::ios::trunc);
  if (!out_) NLA_INPUT_ERROR(path_, ": cannot open for writing (", std::strerror(errno), ")");
}

AtomicFile::~AtomicFile() {
  if (!committed_) {
    out_.close();
    std::remove(temp_path_.c_str());
  }
}

void AtomicFile::commit() {
  out_.flush();
  if (!out_) NLA_THROW(temp_path_, ": write failed (", std::strerror(errno), ")");
  out_.close();
  if (std::rename(temp_path_.c_str(), path_.c_str()) != 0)
    NLA_THROW("rename ", temp_path_, " -> ", path_, " failed: ", std::strerror(errno));
  committed_ = true;
}

void write_path_atomic(const std::string& path, const std::function<void(const std::string& temporary)>& write) {
  const std::string temporary = path + ".tmp." + std::to_string(getpid());
  try {
    write(temporary);
  } catch (...) {
    fs::remove(temporary);
    throw;
  }
  fs::rename(temporary, path);
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  AtomicFile file(path, true);
  file.stream() << contents;
  file.commit();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) NLA_INPUT_ERROR(path, ": cannot open for reading (", std::strerror(errno), ")");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) NLA_INPUT_ERROR(path, ": read failed");
  return buffer.str();
}

std::string bundled_file(const std::string& relative) {
  if (relative.empty() || relative[0] == '/' || fs::exists(relative)) return relative;
  std::string in_source_tree = std::string(NLA_SOURCE_DIR) + "/" + relative;
  return fs::exists(in_source_tree) ? in_source_tree : relative;
}

}  // namespace nla
