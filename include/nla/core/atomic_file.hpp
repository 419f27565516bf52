// Outputs never look complete before they are: write to "<path>.tmp.<pid>", then rename
// onto <path> in commit(). Destroyed without commit(), the temporary is removed.
#pragma once

#include <fstream>
#include <functional>
#include <string>

namespace nla {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path, bool binary = false);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  std::ofstream& stream() { return out_; }
  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_path_; }
  void commit();  // flush, check the stream, rename; throws Error on failure

 private:
  std::string path_;
  std::string temp_path_;
  std::ofstream out_;
  bool committed_ = false;
};

// Writes `path` through `write(temporary)`, given "<path>.tmp.<pid>", then renames the
// temporary onto `path` (files another library writes: HDF5, a copied store). If `write`
// throws, the temporary is removed and the exception passes on.
void write_path_atomic(const std::string& path, const std::function<void(const std::string& temporary)>& write);

// Writes `contents` to `path` atomically.
void write_file_atomic(const std::string& path, const std::string& contents);
// Reads a whole file; InputError naming the file when it cannot be read.
std::string read_file(const std::string& path);

// A bundled file such as "models/tokenizer.json": `relative` itself when it exists from the
// current directory, else the same path in the source tree nla was built from.
std::string bundled_file(const std::string& relative);

}  // namespace nla
