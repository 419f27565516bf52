// Test fixtures for the corpus readers: files written plain, gzip- or zstd-compressed with
// the libraries themselves, and a helper that reads a whole corpus into a vector.
#pragma once

#include <zlib.h>
#include <zstd.h>

#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "nla/data/corpus.hpp"

namespace nla::test {

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

// One gzip member (windowBits 15 + 16 writes the gzip header).
inline std::string gzip_bytes(const std::string& data) {
  z_stream stream{};
  if (deflateInit2(&stream, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw std::runtime_error("deflateInit2");
  std::string out(deflateBound(&stream, data.size()) + 64, '\0');
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  stream.avail_in = static_cast<uInt>(data.size());
  stream.next_out = reinterpret_cast<Bytef*>(out.data());
  stream.avail_out = static_cast<uInt>(out.size());
  if (deflate(&stream, Z_FINISH) != Z_STREAM_END) throw std::runtime_error("deflate");
  out.resize(stream.total_out);
  deflateEnd(&stream);
  return out;
}

// One zstd frame.
inline std::string zstd_bytes(const std::string& data) {
  std::string out(ZSTD_compressBound(data.size()), '\0');
  size_t n = ZSTD_compress(out.data(), out.size(), data.data(), data.size(), 3);
  if (ZSTD_isError(n)) throw std::runtime_error("ZSTD_compress");
  out.resize(n);
  return out;
}

inline std::vector<data::Document> read_all(data::CorpusOptions options, data::SkipCounts* skipped = nullptr) {
  data::CorpusReader reader(std::move(options));
  std::vector<data::Document> docs;
  data::Document doc;
  while (reader.next(doc)) docs.push_back(doc);
  if (skipped) *skipped = reader.skipped();
  return docs;
}

inline data::CorpusOptions corpus_options(std::vector<std::string> paths) {
  data::CorpusOptions options;
  options.paths = std::move(paths);
  return options;
}

}  // namespace nla::test
