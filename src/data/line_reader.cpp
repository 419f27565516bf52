// Decompressing byte sources (stdio, zlib, libzstd) and the line reader on top of them.
#include "nla/data/line_reader.hpp"

#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"

namespace nla::data {
namespace {

constexpr size_t kChunk = 1 << 17;  // 128 KiB: large enough that syscalls do not dominate

// Raised by the sources without a line number; LineReader adds "path:line".
struct StreamError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Raw file bytes, with a look-ahead used to sniff the compression.
class FileSource final : public ByteSource {
 public:
  explicit FileSource(const std::string& path) : path_(path) {
    if (fs::is_directory(path))
      NLA_INPUT_ERROR(path, ": is a directory, expected a file");
    file_ = std::fopen(path.c_str(), "rb");
    if (!file_) NLA_INPUT_ERROR(path, ": cannot open: ", std::strerror(errno));
  }
  ~FileSource() override { std::fclose(file_); }

  // Up to n bytes that the next read() returns first.
  std::string peek(size_t n) {
    while (pending_.size() < n) {
      char buffer[16];
      size_t got = std::fread(buffer, 1, std::min(sizeof buffer, n - pending_.size()), file_);
      if (got == 0) break;
      pending_.append(buffer, got);
    }
    check_stream();
    return pending_.substr(0, n);
  }

  size_t read(char* buffer, size_t capacity) override {
    if (!pending_.empty()) {
      size_t n = std::min(capacity, pending_.size());
      std::memcpy(buffer, pending_.data(), n);
      pending_.erase(0, n);
      return n;
    }
    size_t got = std::fread(buffer, 1, capacity, file_);
    check_stream();
    return got;
  }

 private:
  void check_stream() {
    if (std::ferror(file_)) throw StreamError(str("read error: ", std::strerror(errno)));
  }
  std::string path_;
  std::FILE* file_ = nullptr;
  std::string pending_;
};

class GzipSource final : public ByteSource {
 public:
  explicit GzipSource(std::unique_ptr<FileSource> file) : file_(std::move(file)), in_(kChunk, '\0') {
    std::memset(&stream_, 0, sizeof stream_);
    // 15 + 32: any window size, gzip or zlib header detected automatically.
    if (inflateInit2(&stream_, 15 + 32) != Z_OK) NLA_THROW("inflateInit2 failed");
  }
  ~GzipSource() override { inflateEnd(&stream_); }

  size_t read(char* buffer, size_t capacity) override {
    stream_.next_out = reinterpret_cast<Bytef*>(buffer);
    stream_.avail_out = static_cast<uInt>(capacity);
    while (stream_.avail_out == capacity) {
      if (stream_.avail_in == 0) {
        size_t got = file_->read(in_.data(), in_.size());
        if (got == 0) {
          if (in_member_) throw StreamError("truncated gzip stream");
          break;
        }
        stream_.next_in = reinterpret_cast<Bytef*>(in_.data());
        stream_.avail_in = static_cast<uInt>(got);
      }
      in_member_ = true;
      int rc = inflate(&stream_, Z_NO_FLUSH);
      if (rc == Z_STREAM_END) {
        // Another member may follow (concatenated gzip files): start over after it.
        in_member_ = false;
        inflateReset(&stream_);
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        throw StreamError(str("corrupt gzip stream: ", stream_.msg ? stream_.msg : zError(rc)));
      }
    }
    return capacity - stream_.avail_out;
  }

 private:
  std::unique_ptr<FileSource> file_;
  std::string in_;
  z_stream stream_;
  bool in_member_ = false;  // inside a member whose end has not been seen
};

class ZstdSource final : public ByteSource {
 public:
  explicit ZstdSource(std::unique_ptr<FileSource> file)
      : file_(std::move(file)), in_(ZSTD_DStreamInSize(), '\0'), stream_(ZSTD_createDStream()) {
    if (!stream_) NLA_THROW("ZSTD_createDStream failed");
  }
  ~ZstdSource() override { ZSTD_freeDStream(stream_); }

  size_t read(char* buffer, size_t capacity) override {
    ZSTD_outBuffer out{buffer, capacity, 0};
    while (out.pos == 0) {
      if (input_.pos == input_.size) {
        size_t got = file_->read(in_.data(), in_.size());
        if (got == 0) {
          if (in_frame_) throw StreamError("truncated zstd stream");
          break;
        }
        input_ = ZSTD_inBuffer{in_.data(), got, 0};
      }
      size_t rc = ZSTD_decompressStream(stream_, &out, &input_);
      if (ZSTD_isError(rc)) throw StreamError(str("corrupt zstd stream: ", ZSTD_getErrorName(rc)));
      in_frame_ = rc != 0;  // 0: a frame ended; the next bytes, if any, start a new one
    }
    return out.pos;
  }

 private:
  std::unique_ptr<FileSource> file_;
  std::string in_;
  ZSTD_DStream* stream_;
  ZSTD_inBuffer input_{nullptr, 0, 0};
  bool in_frame_ = false;
};

}  // namespace

const char* compression_name(Compression compression) {
  switch (compression) {
    case Compression::gzip: return "gzip";
    case Compression::zstd: return "zstd";
    default: return "none";
  }
}

std::unique_ptr<ByteSource> open_byte_source(const std::string& path, Compression* compression) {
  auto file = std::make_unique<FileSource>(path);
  std::string magic;
  try {
    magic = file->peek(4);
  } catch (const StreamError& e) {
    NLA_INPUT_ERROR(path, ": ", e.what());
  }
  Compression kind = Compression::none;
  if (magic.size() >= 2 && magic[0] == '\x1f' && magic[1] == '\x8b') kind = Compression::gzip;
  if (magic == std::string("\x28\xb5\x2f\xfd", 4)) kind = Compression::zstd;
  if (compression) *compression = kind;
  switch (kind) {
    case Compression::gzip: return std::make_unique<GzipSource>(std::move(file));
    case Compression::zstd: return std::make_unique<ZstdSource>(std::move(file));
    default: return file;
  }
}

LineReader::LineReader(const std::string& path) : path_(path), buffer_(kChunk, '\0') {
  source_ = open_byte_source(path, &compression_);
}

LineReader::~LineReader() = default;

bool LineReader::fill() {
  if (eof_) return false;
  // Keep the unread tail at the front and grow the buffer only for a line longer than it.
  if (begin_ > 0) {
    std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  if (buffer_.size() - end_ < kChunk / 2) buffer_.resize(buffer_.size() * 2);
  size_t got = 0;
  try {
    got = source_->read(buffer_.data() + end_, buffer_.size() - end_);
  } catch (const StreamError& e) {
    NLA_INPUT_ERROR(path_, ":", line_number_ + 1, ": ", e.what());
  }
  if (got == 0) {
    eof_ = true;
    return false;
  }
  end_ += got;
  return true;
}

bool LineReader::next(std::string& line) {
  size_t scanned = begin_;
  for (;;) {
    const char* start = buffer_.data() + scanned;
    const void* newline = std::memchr(start, '\n', end_ - scanned);
    if (newline) {
      size_t stop = static_cast<const char*>(newline) - buffer_.data();
      size_t length = stop - begin_;
      if (length > 0 && buffer_[stop - 1] == '\r') --length;
      line.assign(buffer_.data() + begin_, length);
      begin_ = stop + 1;
      ++line_number_;
      return true;
    }
    size_t offset = end_ - begin_;  // fill() moves the unread bytes to the front
    if (!fill()) break;
    scanned = begin_ + offset;
  }
  if (begin_ == end_) return false;
  size_t length = end_ - begin_;
  if (buffer_[end_ - 1] == '\r') --length;
  line.assign(buffer_.data() + begin_, length);
  begin_ = end_;
  ++line_number_;
  return true;
}

void LineReader::read_rest(std::string& out) {
  out.assign(buffer_.data() + begin_, end_ - begin_);
  begin_ = end_;
  while (fill()) {
    out.append(buffer_.data() + begin_, end_ - begin_);
    begin_ = end_;
  }
}

}  // namespace nla::data
