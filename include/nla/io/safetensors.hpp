// Safetensors files and Hugging Face checkpoints (single file or sharded with
// model.safetensors.index.json). No LibTorch here: tensors are raw little-endian bytes;
// the model converts them (src/model/weights.cpp).
//
// File layout: 8-byte little-endian header length N, N bytes of JSON
//   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}
// then the data area; offsets are relative to the data area. Every file is validated when
// opened (header length within the file, offsets inside the data area, no overlap, byte
// count = dtype size x element count) so later reads never go out of bounds; a bad file is
// an InputError naming the file and the tensor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace nla::io {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

// "F32" -> DType::F32; InputError naming `where` for an unknown name.
DType dtype_from_name(std::string_view name, const std::string& where);
const char* dtype_name(DType dtype);
size_t dtype_size(DType dtype);

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets in the data area
  uint64_t end = 0;
  uint64_t num_elements() const;
  uint64_t num_bytes() const { return end - begin; }
};

struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;  // in data-offset order
  std::map<std::string, std::string> metadata;
  uint64_t data_offset = 0;  // where the data area starts in the file (8 + N)
};

// Parses and validates the header of a safetensors file held in `bytes` (at least the
// first 8 + N bytes; `file_size` is the size of the whole file). `path` names the file in
// messages. Throws only InputError. This is the fuzz target's entry point.
SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, size_t available, uint64_t file_size,
                                           const std::string& path);

// A read-only memory-mapped safetensors file.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const SafetensorsHeader& header() const { return header_; }
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  const TensorInfo* find(const std::string& name) const;  // nullptr when absent
  // The tensor's bytes inside the mapping (valid while this object lives).
  const uint8_t* data(const TensorInfo& info) const;

 private:
  std::string path_;
  const uint8_t* map_ = nullptr;
  size_t map_size_ = 0;
  SafetensorsHeader header_;
  std::map<std::string, size_t> index_;
};

// A tensor to write: the writer copies `data` (num_bytes must equal dtype size x elements).
struct TensorBytes {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t num_bytes = 0;
};

// Writes one safetensors file atomically (temporary name, then rename). The header is
// padded with spaces to a multiple of 8 bytes so the data area is 8-byte aligned.
void write_safetensors(const std::string& path, const std::vector<TensorBytes>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// ---- checkpoints: a directory with model.safetensors or shards + index -----------------

// A tensor planned for a checkpoint: its bytes are produced on demand (one shard in
// memory at a time, so a 7B checkpoint is written without holding it whole).
struct PlannedTensor {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t num_bytes() const;
};
// Fills `out` (already sized to num_bytes()) with the tensor's bytes.
using TensorProducer = std::function<void(const PlannedTensor& tensor, std::vector<uint8_t>& out)>;

// Writes model.safetensors when the total fits in `max_shard_bytes`, else
// model-0000i-of-0000n.safetensors + model.safetensors.index.json (HF layout). Each file is
// atomic; the index is written last, so a directory without it is not a usable checkpoint.
// Returns the file names written.
std::vector<std::string> write_checkpoint(const std::string& directory, const std::vector<PlannedTensor>& tensors,
                                          const TensorProducer& producer, uint64_t max_shard_bytes,
                                          const std::map<std::string, std::string>& metadata = {});

// Reads a checkpoint directory: model.safetensors.index.json when present (every shard it
// names is opened and each tensor must be in the shard the index says), else
// model.safetensors.
class CheckpointReader {
 public:
  explicit CheckpointReader(const std::string& directory);
  ~CheckpointReader();

  const std::string& directory() const { return directory_; }
  struct Entry {
    const SafetensorsFile* file;
    const TensorInfo* info;
  };
  // nullptr-file entry when absent.
  Entry find(const std::string& name) const;
  std::vector<std::string> tensor_names() const;

 private:
  std::string directory_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, Entry> entries_;
};

}  // namespace nla::io
