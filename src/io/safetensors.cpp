// Safetensors: header validation, memory-mapped reads, atomic writes, sharded checkpoints.
#include "nla/io/safetensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "nla/core/atomic_file.hpp"
#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian");

namespace nla::io {

namespace {

// The reference implementation's limit: a larger header is refused before parsing.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

struct DTypeRow {
  DType dtype;
  const char* name;
  size_t size;
};
constexpr DTypeRow kDTypes[] = {
    {DType::F64, "F64", 8}, {DType::F32, "F32", 4}, {DType::F16, "F16", 2}, {DType::BF16, "BF16", 2},
    {DType::I64, "I64", 8}, {DType::I32, "I32", 4}, {DType::I16, "I16", 2}, {DType::I8, "I8", 1},
    {DType::U8, "U8", 1},   {DType::BOOL, "BOOL", 1},
};

bool is_unsigned_integer(const nlohmann::json& value) {
  return value.is_number_unsigned() || (value.is_number_integer() && value.get<int64_t>() >= 0);
}

uint64_t checked_mul(uint64_t a, uint64_t b, bool& overflow) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) overflow = true;
  return a * b;
}

}  // namespace

DType dtype_from_name(std::string_view name, const std::string& where) {
  for (const auto& row : kDTypes)
    if (name == row.name) return row.dtype;
  NLA_INPUT_ERROR(where, ": unknown dtype '", name, "' (expected F64, F32, F16, BF16, I64, I32, I16, I8, U8 or BOOL)");
}

const char* dtype_name(DType dtype) {
  for (const auto& row : kDTypes)
    if (row.dtype == dtype) return row.name;
  NLA_THROW("bad dtype ", static_cast<int>(dtype));
}

size_t dtype_size(DType dtype) {
  for (const auto& row : kDTypes)
    if (row.dtype == dtype) return row.size;
  NLA_THROW("bad dtype ", static_cast<int>(dtype));
}

uint64_t TensorInfo::num_elements() const {
  uint64_t count = 1;
  for (int64_t d : shape) count *= static_cast<uint64_t>(d);
  return count;
}

uint64_t PlannedTensor::num_bytes() const {
  uint64_t count = dtype_size(dtype);
  for (int64_t d : shape) count *= static_cast<uint64_t>(d);
  return count;
}

SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, size_t available, uint64_t file_size,
                                           const std::string& path) {
  NLA_CHECK_INPUT(file_size >= 8 && available >= 8, path, ": not a safetensors file (", file_size,
                  " bytes, shorter than the 8-byte header length)");
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes, 8);
  NLA_CHECK_INPUT(header_len <= file_size - 8, path, ": header length ", header_len, " runs past the end of the file (",
                  file_size, " bytes)");
  NLA_CHECK_INPUT(header_len <= kMaxHeaderBytes, path, ": header length ", header_len, " exceeds the 100 MB limit");
  NLA_CHECK_INPUT(header_len <= available - 8, path, ": header truncated");
  SafetensorsHeader header;
  header.data_offset = 8 + header_len;
  const uint64_t data_size = file_size - header.data_offset;

  std::string_view text(reinterpret_cast<const char*>(bytes + 8), header_len);
  // No exceptions from the parser: a discarded value means invalid JSON.
  nlohmann::json json = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  NLA_CHECK_INPUT(!json.is_discarded(), path, ": header is not valid JSON");
  NLA_CHECK_INPUT(json.is_object(), path, ": header is not a JSON object");

  for (auto it = json.begin(); it != json.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& entry = it.value();
    if (name == "__metadata__") {
      NLA_CHECK_INPUT(entry.is_object(), path, ": __metadata__ is not an object");
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        NLA_CHECK_INPUT(m.value().is_string(), path, ": __metadata__.", m.key(), " is not a string");
        header.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    NLA_CHECK_INPUT(entry.is_object(), path, ": tensor '", name, "': entry is not an object");
    auto dtype_it = entry.find("dtype");
    auto shape_it = entry.find("shape");
    auto offsets_it = entry.find("data_offsets");
    NLA_CHECK_INPUT(dtype_it != entry.end() && dtype_it->is_string(), path, ": tensor '", name,
                    "': missing or non-string 'dtype'");
    NLA_CHECK_INPUT(shape_it != entry.end() && shape_it->is_array(), path, ": tensor '", name,
                    "': missing or non-array 'shape'");
    NLA_CHECK_INPUT(offsets_it != entry.end() && offsets_it->is_array() && offsets_it->size() == 2, path, ": tensor '",
                    name, "': 'data_offsets' must be [begin, end]");
    TensorInfo info;
    info.name = name;
    info.dtype = dtype_from_name(dtype_it->get<std::string>(), path + ": tensor '" + name + "'");
    bool overflow = false;
    uint64_t elements = 1;
    for (const auto& dim : *shape_it) {
      NLA_CHECK_INPUT(is_unsigned_integer(dim), path, ": tensor '", name, "': shape entries must be integers >= 0");
      uint64_t d = dim.get<uint64_t>();
      NLA_CHECK_INPUT(d <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), path, ": tensor '", name,
                      "': dimension too large");
      info.shape.push_back(static_cast<int64_t>(d));
      elements = checked_mul(elements, d, overflow);
    }
    uint64_t expected_bytes = checked_mul(elements, dtype_size(info.dtype), overflow);
    NLA_CHECK_INPUT(!overflow, path, ": tensor '", name, "': element count overflows");
    const auto& begin = (*offsets_it)[0];
    const auto& end = (*offsets_it)[1];
    NLA_CHECK_INPUT(is_unsigned_integer(begin) && is_unsigned_integer(end), path, ": tensor '", name,
                    "': data_offsets must be integers >= 0");
    info.begin = begin.get<uint64_t>();
    info.end = end.get<uint64_t>();
    NLA_CHECK_INPUT(info.begin <= info.end, path, ": tensor '", name, "': data_offsets begin ", info.begin,
                    " > end ", info.end);
    NLA_CHECK_INPUT(info.end <= data_size, path, ": tensor '", name, "': data_offsets [", info.begin, ", ", info.end,
                    ") outside the data area (", data_size, " bytes)");
    NLA_CHECK_INPUT(info.end - info.begin == expected_bytes, path, ": tensor '", name, "': ", info.end - info.begin,
                    " bytes but dtype ", dtype_name(info.dtype), " and shape need ", expected_bytes);
    header.tensors.push_back(std::move(info));
  }
  std::sort(header.tensors.begin(), header.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  // Sorted by begin, a non-empty tensor overlaps another iff it starts before the end of
  // the previous non-empty one (empty tensors occupy no bytes).
  const TensorInfo* previous = nullptr;
  for (const auto& current : header.tensors) {
    if (current.begin == current.end) continue;
    NLA_CHECK_INPUT(!previous || previous->end <= current.begin, path, ": tensors '", previous->name, "' [",
                    previous->begin, ", ", previous->end, ") and '", current.name, "' [", current.begin, ", ",
                    current.end, ") overlap");
    previous = &current;
  }
  return header;
}

// ---- reading ---------------------------------------------------------------------------

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) NLA_INPUT_ERROR(path, ": cannot open (", std::strerror(errno), ")");
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int saved = errno;
    ::close(fd);
    NLA_INPUT_ERROR(path, ": cannot stat (", std::strerror(saved), ")");
  }
  map_size_ = static_cast<size_t>(st.st_size);
  if (map_size_ > 0) {
    void* map = ::mmap(nullptr, map_size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      int saved = errno;
      ::close(fd);
      NLA_INPUT_ERROR(path, ": cannot mmap (", std::strerror(saved), ")");
    }
    map_ = static_cast<const uint8_t*>(map);
  }
  ::close(fd);  // the mapping keeps the file alive
  try {
    static const uint8_t empty[8] = {};
    header_ = parse_safetensors_header(map_ ? map_ : empty, map_size_, map_size_, path);
  } catch (...) {
    if (map_) ::munmap(const_cast<uint8_t*>(map_), map_size_);
    throw;
  }
  for (size_t i = 0; i < header_.tensors.size(); ++i) index_[header_.tensors[i].name] = i;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(const_cast<uint8_t*>(map_), map_size_);
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &header_.tensors[it->second];
}

const uint8_t* SafetensorsFile::data(const TensorInfo& info) const { return map_ + header_.data_offset + info.begin; }

// ---- writing ---------------------------------------------------------------------------

namespace {

std::string header_json(const std::vector<TensorBytes>& tensors, const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json json = nlohmann::ordered_json::object();
  if (!metadata.empty()) json["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& tensor : tensors) {
    json[tensor.name] = {{"dtype", dtype_name(tensor.dtype)},
                         {"shape", tensor.shape},
                         {"data_offsets", {offset, offset + tensor.num_bytes}}};
    offset += tensor.num_bytes;
  }
  std::string text = json.dump();
  while ((8 + text.size()) % 8 != 0) text += ' ';
  return text;
}

}  // namespace

void write_safetensors(const std::string& path, const std::vector<TensorBytes>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  for (const auto& tensor : tensors) {
    uint64_t expected = dtype_size(tensor.dtype);
    for (int64_t d : tensor.shape) expected *= static_cast<uint64_t>(d);
    NLA_CHECK(expected == tensor.num_bytes, "tensor ", tensor.name, ": ", tensor.num_bytes, " bytes, shape needs ",
              expected);
  }
  std::string header = header_json(tensors, metadata);
  AtomicFile file(path, true);
  uint64_t length = header.size();
  file.stream().write(reinterpret_cast<const char*>(&length), 8);
  file.stream().write(header.data(), static_cast<std::streamsize>(header.size()));
  for (const auto& tensor : tensors)
    file.stream().write(static_cast<const char*>(tensor.data), static_cast<std::streamsize>(tensor.num_bytes));
  file.commit();
}

std::vector<std::string> write_checkpoint(const std::string& directory, const std::vector<PlannedTensor>& tensors,
                                          const TensorProducer& producer, uint64_t max_shard_bytes,
                                          const std::map<std::string, std::string>& metadata) {
  // Greedy packing in the given order, as Hugging Face's shard_checkpoint does.
  std::vector<std::vector<size_t>> shards(1);
  uint64_t shard_bytes = 0, total_bytes = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    uint64_t bytes = tensors[i].num_bytes();
    if (!shards.back().empty() && shard_bytes + bytes > max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(i);
    shard_bytes += bytes;
    total_bytes += bytes;
  }
  std::vector<std::string> names;
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  for (size_t s = 0; s < shards.size(); ++s) {
    std::string name = "model.safetensors";
    if (shards.size() > 1) {
      char buffer[64];
      std::snprintf(buffer, sizeof buffer, "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
      name = buffer;
    }
    std::vector<std::vector<uint8_t>> buffers(shards[s].size());
    std::vector<TensorBytes> views;
    for (size_t j = 0; j < shards[s].size(); ++j) {
      const PlannedTensor& tensor = tensors[shards[s][j]];
      buffers[j].resize(tensor.num_bytes());
      producer(tensor, buffers[j]);
      views.push_back({tensor.name, tensor.dtype, tensor.shape, buffers[j].data(), buffers[j].size()});
      weight_map[tensor.name] = name;
    }
    auto shard_metadata = metadata;
    shard_metadata.emplace("format", "pt");  // transformers expects it
    write_safetensors(directory + "/" + name, views, shard_metadata);
    names.push_back(name);
  }
  if (shards.size() > 1) {
    nlohmann::ordered_json index = {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}};
    write_file_atomic(directory + "/model.safetensors.index.json", index.dump(2) + "\n");
    names.push_back("model.safetensors.index.json");
  }
  return names;
}

// ---- checkpoints -----------------------------------------------------------------------

CheckpointReader::CheckpointReader(const std::string& directory) : directory_(directory) {
  NLA_CHECK_INPUT(fs::is_directory(directory), directory, ": not a checkpoint directory");
  std::string index_path = directory + "/model.safetensors.index.json";
  if (fs::exists(index_path)) {
    nlohmann::json index = nlohmann::json::parse(read_file(index_path), nullptr, false);
    NLA_CHECK_INPUT(!index.is_discarded() && index.is_object(), index_path, ": not valid JSON");
    auto map_it = index.find("weight_map");
    NLA_CHECK_INPUT(map_it != index.end() && map_it->is_object(), index_path, ": missing key 'weight_map'");
    std::map<std::string, const SafetensorsFile*> by_file;
    for (auto it = map_it->begin(); it != map_it->end(); ++it) {
      NLA_CHECK_INPUT(it.value().is_string(), index_path, ": weight_map.", it.key(), " is not a file name");
      std::string file = it.value().get<std::string>();
      NLA_CHECK_INPUT(file.find('/') == std::string::npos && !file.empty(), index_path, ": weight_map.", it.key(),
                      ": '", file, "' is not a file name in the checkpoint directory");
      if (!by_file.count(file)) {
        files_.push_back(std::make_unique<SafetensorsFile>(directory + "/" + file));
        by_file[file] = files_.back().get();
      }
      const SafetensorsFile* shard = by_file[file];
      const TensorInfo* info = shard->find(it.key());
      NLA_CHECK_INPUT(info, shard->path(), ": tensor '", it.key(), "' missing (", index_path, " places it here)");
      entries_[it.key()] = {shard, info};
    }
  } else {
    std::string single = directory + "/model.safetensors";
    NLA_CHECK_INPUT(fs::exists(single), directory, ": no model.safetensors or model.safetensors.index.json");
    files_.push_back(std::make_unique<SafetensorsFile>(single));
    for (const auto& info : files_.back()->tensors()) entries_[info.name] = {files_.back().get(), &info};
  }
}

CheckpointReader::~CheckpointReader() = default;

CheckpointReader::Entry CheckpointReader::find(const std::string& name) const {
  auto it = entries_.find(name);
  return it == entries_.end() ? Entry{nullptr, nullptr} : it->second;
}

std::vector<std::string> CheckpointReader::tensor_names() const {
  std::vector<std::string> names;
  for (const auto& [name, entry] : entries_) names.push_back(name);
  return names;
}

}  // namespace nla::io
