// Line-by-line reading of plain, gzip or zstd files, the compression detected from the
// first bytes (gzip 1f 8b, zstd 28 b5 2f fd), never from the name. Memory is one read
// buffer plus the longest line, whatever the file size. Concatenated gzip members and zstd
// frames (as written by parallel compressors and `cat a.zst b.zst`) are read through.
// Corrupt or truncated streams raise nla::InputError "path:line: ...".
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace nla::data {

enum class Compression { none, gzip, zstd };
const char* compression_name(Compression compression);  // "none" | "gzip" | "zstd"

// A stream of decompressed bytes.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Up to `capacity` bytes into `buffer`; 0 only at the end of the stream.
  virtual size_t read(char* buffer, size_t capacity) = 0;
};

// Opens `path` (throws InputError naming it when it cannot be opened or is a directory)
// and returns the decompressed stream; `compression` receives what was detected.
std::unique_ptr<ByteSource> open_byte_source(const std::string& path, Compression* compression = nullptr);

class LineReader {
 public:
  explicit LineReader(const std::string& path);
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // The next line without its "\n" (and "\r"); false at the end of the file. A last line
  // without a final newline is still a line.
  bool next(std::string& line);
  // Reads everything left into `out` (bytes as they are), for one-document text files.
  void read_rest(std::string& out);
  int64_t line_number() const { return line_number_; }  // 1-based number of the last line
  const std::string& path() const { return path_; }
  Compression compression() const { return compression_; }

 private:
  bool fill();  // more bytes into buffer_; false at the end

  std::string path_;
  Compression compression_ = Compression::none;
  std::unique_ptr<ByteSource> source_;
  std::string buffer_;
  size_t begin_ = 0, end_ = 0;  // unread bytes: buffer_[begin_, end_)
  bool eof_ = false;
  int64_t line_number_ = 0;
};

}  // namespace nla::data
