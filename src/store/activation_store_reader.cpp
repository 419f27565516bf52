// Read access to a finished activation store, from any rank, without collectives.
#include <algorithm>
#include <cmath>
#include <functional>
#include <nlohmann/json.hpp>

#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/store/activation_store.hpp"

namespace nla::store {

namespace {

// Non-finite activations (a corrupt store, or a model that overflowed) must not be trained or
// scored on: the first one ends the run, naming the file, layer, row and dimension. One pass
// over what was read (the cost is in `nla bench sft`).
void check_finite_rows(const std::string& path, int layer, const std::vector<float>& values, size_t width,
                       const std::function<int64_t(size_t)>& row_id) {
  const int64_t bad = first_non_finite(values.data(), values.size());
  if (bad < 0) return;
  const size_t i = static_cast<size_t>(bad);
  NLA_INPUT_ERROR(path, ": layer ", layer, ", row ", row_id(i / width), ", dimension ", i % width, ": value ",
                  values[i], " (expected finite activations: the store is damaged, or the model that wrote it overflowed)");
}

}  // namespace

int64_t first_non_finite(const float* values, size_t count) {
  // A branch-free pass (the compiler vectorises it); the position is looked for only on failure.
  bool all_finite = true;
  for (size_t i = 0; i < count; ++i) all_finite &= std::isfinite(values[i]);
  if (all_finite) return -1;
  for (size_t i = 0; i < count; ++i)
    if (!std::isfinite(values[i])) return static_cast<int64_t>(i);
  return -1;
}

StoreHeader read_store_header(hid_t file, const std::string& path) {
  auto require = [&](const char* name) {
    NLA_CHECK_INPUT(attribute_exists(file, name), path, ": attribute '", name, "' is missing (not an nla store?)");
  };
  require("format");
  std::string format = read_string_attribute(file, "format");
  NLA_CHECK_INPUT(format == kStoreFormat, path, ": attribute 'format': expected \"", kStoreFormat, "\", got \"",
                  format, "\"");
  for (const char* name : {"version", "model", "model_config", "tokenizer_sha256", "created_by", "seed",
                           "positions_per_doc", "hidden_size", "layers", "skipped"})
    require(name);
  int64_t version = read_int_attribute(file, "version");
  NLA_CHECK_INPUT(version == kStoreVersion, path, ": attribute 'version': expected ", kStoreVersion, ", got ",
                  version);
  StoreHeader header;
  header.model = read_string_attribute(file, "model");
  header.model_config = read_string_attribute(file, "model_config");
  header.tokenizer_sha256 = read_string_attribute(file, "tokenizer_sha256");
  header.created_by = read_string_attribute(file, "created_by");
  // Stores written before the device policy lack these three (an empty string then).
  for (auto [name, field] : {std::pair{"device", &header.device}, std::pair{"device_name", &header.device_name},
                             std::pair{"precision", &header.precision}})
    if (attribute_exists(file, name)) *field = read_string_attribute(file, name);
  header.checksums = attribute_exists(file, "checksums") && read_int_attribute(file, "checksums") != 0;
  header.seed = read_int_attribute(file, "seed");
  header.positions_per_doc = read_int_attribute(file, "positions_per_doc");
  header.hidden_size = read_int_attribute(file, "hidden_size");
  try {
    header.layers = nlohmann::json::parse(read_string_attribute(file, "layers")).get<std::vector<int>>();
    header.skipped =
        nlohmann::json::parse(read_string_attribute(file, "skipped")).get<std::map<std::string, int64_t>>();
  } catch (const nlohmann::json::exception&) {
    NLA_INPUT_ERROR(path, ": attributes 'layers'/'skipped': expected JSON (a list of ints, an object of counts)");
  }
  return header;
}

ActivationStore::ActivationStore(const std::string& path) : path_(path) {
  silence_hdf5_errors();
  if (!fs::exists(path_)) {
    NLA_CHECK_INPUT(!fs::exists(path_ + ".partial"), path_,
                    ": not finished (", path_, ".partial exists: rerun the same nla extract to resume)");
    NLA_INPUT_ERROR(path_, ": no such file");
  }
  NLA_CHECK_INPUT(H5Fis_hdf5(path_.c_str()) > 0, path_, ": not an HDF5 file");
  file_ = H5Handle(H5Fopen(path_.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  NLA_CHECK_INPUT(file_.valid(), path_, ": cannot be opened as an HDF5 file (truncated or damaged?): ",
                  hdf5_error_text());
  header_ = read_store_header(file_, path_);
  NLA_CHECK_INPUT(attribute_exists(file_, "complete") && read_int_attribute(file_, "complete") == 1, path_,
                  ": attribute 'complete': expected 1 (the extraction did not finish)");
  for (const char* name : {"docs/text", "docs/source", "docs/id", "samples/doc", "samples/position", "samples/token"})
    NLA_CHECK_INPUT(link_exists(file_, name), path_, ": dataset '/", name, "' is missing");
  sample_doc_ = read_vector_dataset<int64_t>(file_, "samples/doc");
  sample_position_ = read_vector_dataset<int32_t>(file_, "samples/position");
  sample_token_ = read_vector_dataset<int32_t>(file_, "samples/token");
  NLA_CHECK_INPUT(sample_position_.size() == sample_doc_.size() && sample_token_.size() == sample_doc_.size(), path_,
                  ": datasets '/samples/*': expected equal lengths");
  text_dataset_ = H5Handle(NLA_CHECK_H5(H5Dopen2(file_, "docs/text", H5P_DEFAULT)));
  source_dataset_ = H5Handle(NLA_CHECK_H5(H5Dopen2(file_, "docs/source", H5P_DEFAULT)));
  id_dataset_ = H5Handle(NLA_CHECK_H5(H5Dopen2(file_, "docs/id", H5P_DEFAULT)));
  H5Handle space(NLA_CHECK_H5(H5Dget_space(text_dataset_)));
  n_documents_ = NLA_CHECK_H5(H5Sget_simple_extent_npoints(space));
  for (int layer : header_.layers) {
    std::string name = "layers/" + std::to_string(layer) + "/acts";
    NLA_CHECK_INPUT(link_exists(file_, name), path_, ": dataset '/", name, "' is missing");
    H5Handle dataset(NLA_CHECK_H5(H5Dopen2(file_, name.c_str(), H5P_DEFAULT)));
    H5Handle layer_space(NLA_CHECK_H5(H5Dget_space(dataset)));
    hsize_t dims[2] = {0, 0};
    NLA_CHECK_INPUT(H5Sget_simple_extent_ndims(layer_space) == 2, path_, ": dataset '/", name, "': expected 2-D");
    H5Sget_simple_extent_dims(layer_space, dims, nullptr);
    NLA_CHECK_INPUT(dims[0] == sample_doc_.size() && static_cast<int64_t>(dims[1]) == header_.hidden_size, path_,
                    ": dataset '/", name, "': expected shape [", sample_doc_.size(), ", ", header_.hidden_size, "]");
    layer_datasets_.emplace(layer, std::move(dataset));
  }
}

bool ActivationStore::has_layer(int layer) const { return layer_datasets_.count(layer) > 0; }

hid_t ActivationStore::layer_dataset(int layer) const {
  auto found = layer_datasets_.find(layer);
  if (found == layer_datasets_.end()) {
    std::string layers;
    for (int l : header_.layers) layers += (layers.empty() ? "" : ",") + std::to_string(l);
    NLA_INPUT_ERROR(path_, ": layer ", layer, " is not in the store (layers: ", layers, ")");
  }
  return found->second.get();
}

std::string ActivationStore::document_text(int64_t document) const { return read_string_element(text_dataset_, document); }
std::string ActivationStore::document_source(int64_t document) const { return read_string_element(source_dataset_, document); }
std::string ActivationStore::document_id(int64_t document) const { return read_string_element(id_dataset_, document); }

void ActivationStore::unreadable_rows(int layer, int64_t begin, int64_t end) const {
  // A corrupt or truncated file, or a checksum (Fletcher32) that no longer matches its chunk.
  NLA_INPUT_ERROR(path_, ": layer ", layer, ", rows ", begin, "-", end - 1, ": cannot be read (", hdf5_error_text(),
                  "); the store is damaged: extract it again");
}

std::vector<float> ActivationStore::read_rows(int layer, int64_t start, int64_t count) const {
  hid_t dataset = layer_dataset(layer);
  NLA_CHECK(start >= 0 && count >= 0 && start + count <= n_samples(), "rows [", start, ", ", start + count,
            ") outside the store's ", n_samples(), " samples");
  const hsize_t width = header_.hidden_size;
  std::vector<float> rows(static_cast<size_t>(count) * width);
  if (count == 0) return rows;
  H5Handle file_space(NLA_CHECK_H5(H5Dget_space(dataset)));
  hsize_t offset[2] = {static_cast<hsize_t>(start), 0}, extent[2] = {static_cast<hsize_t>(count), width};
  NLA_CHECK_H5(H5Sselect_hyperslab(file_space, H5S_SELECT_SET, offset, nullptr, extent, nullptr));
  H5Handle memory_space(NLA_CHECK_H5(H5Screate_simple(2, extent, nullptr)));
  if (H5Dread(dataset, H5T_NATIVE_FLOAT, memory_space, file_space, H5P_DEFAULT, rows.data()) < 0)
    unreadable_rows(layer, start, start + count);
  check_finite_rows(path_, layer, rows, width, [&](size_t row) { return start + static_cast<int64_t>(row); });
  return rows;
}

std::vector<float> ActivationStore::read_rows(int layer, const std::vector<int64_t>& wanted) const {
  hid_t dataset = layer_dataset(layer);
  const size_t width = header_.hidden_size;
  std::vector<int64_t> sorted = wanted;
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  std::vector<float> rows(wanted.size() * width);
  if (sorted.empty()) return rows;
  NLA_CHECK(sorted.front() >= 0 && sorted.back() < n_samples(), "row ", sorted.back(), " outside the store's ",
            n_samples(), " samples");
  // One hyperslab per run of consecutive rows; HDF5 returns them in file order.
  H5Handle file_space(NLA_CHECK_H5(H5Dget_space(dataset)));
  NLA_CHECK_H5(H5Sselect_none(file_space));
  for (size_t i = 0; i < sorted.size();) {
    size_t j = i + 1;
    while (j < sorted.size() && sorted[j] == sorted[j - 1] + 1) ++j;
    hsize_t offset[2] = {static_cast<hsize_t>(sorted[i]), 0}, extent[2] = {j - i, width};
    NLA_CHECK_H5(H5Sselect_hyperslab(file_space, H5S_SELECT_OR, offset, nullptr, extent, nullptr));
    i = j;
  }
  hsize_t memory_dims[2] = {sorted.size(), width};
  H5Handle memory_space(NLA_CHECK_H5(H5Screate_simple(2, memory_dims, nullptr)));
  std::vector<float> unique_rows(sorted.size() * width);
  if (H5Dread(dataset, H5T_NATIVE_FLOAT, memory_space, file_space, H5P_DEFAULT, unique_rows.data()) < 0)
    unreadable_rows(layer, sorted.front(), sorted.back() + 1);
  check_finite_rows(path_, layer, unique_rows, width, [&](size_t row) { return sorted[row]; });
  for (size_t k = 0; k < wanted.size(); ++k) {
    size_t at = std::lower_bound(sorted.begin(), sorted.end(), wanted[k]) - sorted.begin();
    std::copy_n(unique_rows.begin() + at * width, width, rows.begin() + k * width);
  }
  return rows;
}

bool ActivationStore::has_descriptions(const std::string& name) const {
  return link_exists(file_, "descriptions/" + name);
}

std::vector<std::string> ActivationStore::read_descriptions(const std::string& name) const {
  NLA_CHECK_INPUT(has_descriptions(name), path_, ": dataset '/descriptions/", name, "' is missing (run nla label)");
  auto descriptions = read_string_dataset(file_, "descriptions/" + name);
  NLA_CHECK_INPUT(static_cast<int64_t>(descriptions.size()) == n_samples(), path_, ": dataset '/descriptions/", name,
                  "': expected ", n_samples(), " entries, got ", descriptions.size());
  return descriptions;
}

void ActivationStore::write_descriptions(const std::string& path, const std::string& name,
                                         const std::vector<std::string>& descriptions) {
  silence_hdf5_errors();
  H5Handle file(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT));
  NLA_CHECK_INPUT(file.valid(), path, ": cannot be opened for writing as an HDF5 file: ", hdf5_error_text());
  H5Handle samples(NLA_CHECK_H5(H5Dopen2(file, "samples/doc", H5P_DEFAULT)));
  H5Handle space(NLA_CHECK_H5(H5Dget_space(samples)));
  auto n = NLA_CHECK_H5(H5Sget_simple_extent_npoints(space));
  NLA_CHECK(static_cast<int64_t>(descriptions.size()) == n, "write_descriptions: ", descriptions.size(),
            " descriptions for ", n, " samples");
  write_string_dataset(file, "descriptions/" + name, descriptions);
  NLA_CHECK_H5(H5Fflush(file, H5F_SCOPE_GLOBAL));
}

}  // namespace nla::store
