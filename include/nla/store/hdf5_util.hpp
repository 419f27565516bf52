// Small HDF5 helpers shared by the activation store and the evaluation results:
// an RAII handle and typed attribute / dataset helpers. Every call is checked
// (NLA_CHECK_H5); errors name the file and the object.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

namespace nla::store {

// Owns one hid_t and closes it with the right H5*close.
class H5Handle {
 public:
  H5Handle() = default;
  explicit H5Handle(hid_t id);
  ~H5Handle();
  H5Handle(H5Handle&& other) noexcept;
  H5Handle& operator=(H5Handle&& other) noexcept;
  H5Handle(const H5Handle&) = delete;
  H5Handle& operator=(const H5Handle&) = delete;

  hid_t get() const { return id_; }
  operator hid_t() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void close();
  // Gives up ownership (for a checked close by the caller).
  hid_t release() {
    hid_t id = id_;
    id_ = -1;
    return id;
  }

 private:
  hid_t id_ = -1;
};

// Silences HDF5's own error stack printing (errors become exceptions instead).
void silence_hdf5_errors();
// The innermost message of HDF5's current error stack ("truncated file: eof = ...", or
// "unknown cause"), which is then cleared: for errors that name the user's file.
std::string hdf5_error_text();

bool link_exists(hid_t location, const std::string& path);  // every component checked
bool attribute_exists(hid_t object, const std::string& name);

void write_attribute(hid_t object, const std::string& name, const std::string& value);
void write_attribute(hid_t object, const std::string& name, int64_t value);
void write_attribute(hid_t object, const std::string& name, double value);
std::string read_string_attribute(hid_t object, const std::string& name);
int64_t read_int_attribute(hid_t object, const std::string& name);

// 1-D variable-length UTF-8 string datasets (serial writes only: parallel HDF5 cannot
// write variable-length data collectively).
void write_string_dataset(hid_t location, const std::string& path, const std::vector<std::string>& values);
std::vector<std::string> read_string_dataset(hid_t location, const std::string& path);
// One element of such a dataset (random access without reading the whole column).
std::string read_string_element(hid_t dataset, int64_t index);

// 1-D numeric datasets, whole.
template <typename T>
void write_vector_dataset(hid_t location, const std::string& path, const std::vector<T>& values);
template <typename T>
std::vector<T> read_vector_dataset(hid_t location, const std::string& path);

// Creates intermediate groups of `path` ("a/b/c" creates a and a/b).
H5Handle create_group_path(hid_t location, const std::string& path);

}  // namespace nla::store
