// HDF5 helpers: RAII handles, attributes, string and vector datasets.
#include "nla/store/hdf5_util.hpp"

#include <type_traits>

#include "nla/core/error.hpp"

namespace nla::store {

H5Handle::H5Handle(hid_t id) : id_(id) {}
H5Handle::~H5Handle() { close(); }
H5Handle::H5Handle(H5Handle&& other) noexcept : id_(other.id_) { other.id_ = -1; }
H5Handle& H5Handle::operator=(H5Handle&& other) noexcept {
  if (this != &other) {
    close();
    id_ = other.id_;
    other.id_ = -1;
  }
  return *this;
}

void H5Handle::close() {
  if (id_ < 0) return;
  // Destructors must not throw: failures to close are ignored here; writers close
  // explicitly (and checked) where it matters.
  switch (H5Iget_type(id_)) {
    case H5I_FILE: H5Fclose(id_); break;
    case H5I_GROUP: H5Gclose(id_); break;
    case H5I_DATASET: H5Dclose(id_); break;
    case H5I_DATASPACE: H5Sclose(id_); break;
    case H5I_DATATYPE: H5Tclose(id_); break;
    case H5I_ATTR: H5Aclose(id_); break;
    case H5I_GENPROP_LST: H5Pclose(id_); break;
    default: break;
  }
  id_ = -1;
}

namespace {
herr_t innermost_message(unsigned, const H5E_error2_t* entry, void* out) {
  auto* message = static_cast<std::string*>(out);
  if (entry && entry->desc && message->empty()) *message = entry->desc;
  return 0;
}
}  // namespace

std::string hdf5_error_text() {
  std::string message;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost_message, &message);
  H5Eclear2(H5E_DEFAULT);
  return message.empty() ? "unknown cause" : message;
}

void silence_hdf5_errors() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

bool link_exists(hid_t location, const std::string& path) {
  std::string prefix;
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    std::string part = path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (!part.empty()) {
      prefix += (prefix.empty() ? "" : "/") + part;
      if (NLA_CHECK_H5(H5Lexists(location, prefix.c_str(), H5P_DEFAULT)) <= 0) return false;
    }
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return true;
}

bool attribute_exists(hid_t object, const std::string& name) {
  return NLA_CHECK_H5(H5Aexists(object, name.c_str())) > 0;
}

static H5Handle utf8_string_type() {
  H5Handle type(NLA_CHECK_H5(H5Tcopy(H5T_C_S1)));
  NLA_CHECK_H5(H5Tset_size(type, H5T_VARIABLE));
  NLA_CHECK_H5(H5Tset_cset(type, H5T_CSET_UTF8));
  return type;
}

void write_attribute(hid_t object, const std::string& name, const std::string& value) {
  if (attribute_exists(object, name)) NLA_CHECK_H5(H5Adelete(object, name.c_str()));
  H5Handle type = utf8_string_type();
  H5Handle space(NLA_CHECK_H5(H5Screate(H5S_SCALAR)));
  H5Handle attribute(NLA_CHECK_H5(H5Acreate2(object, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT)));
  const char* data = value.c_str();
  NLA_CHECK_H5(H5Awrite(attribute, type, &data));
}

namespace {
// A scalar numeric attribute, replacing one of the same name.
void write_scalar_attribute(hid_t object, const std::string& name, hid_t file_type, hid_t memory_type,
                            const void* value) {
  if (attribute_exists(object, name)) NLA_CHECK_H5(H5Adelete(object, name.c_str()));
  H5Handle space(NLA_CHECK_H5(H5Screate(H5S_SCALAR)));
  H5Handle attribute(NLA_CHECK_H5(H5Acreate2(object, name.c_str(), file_type, space, H5P_DEFAULT, H5P_DEFAULT)));
  NLA_CHECK_H5(H5Awrite(attribute, memory_type, value));
}
}  // namespace

void write_attribute(hid_t object, const std::string& name, int64_t value) {
  write_scalar_attribute(object, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}

void write_attribute(hid_t object, const std::string& name, double value) {
  write_scalar_attribute(object, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value);
}

std::string read_string_attribute(hid_t object, const std::string& name) {
  H5Handle attribute(NLA_CHECK_H5(H5Aopen(object, name.c_str(), H5P_DEFAULT)));
  H5Handle file_type(NLA_CHECK_H5(H5Aget_type(attribute)));
  if (H5Tget_class(file_type) != H5T_STRING) NLA_THROW("attribute '", name, "' is not a string");
  if (H5Tis_variable_str(file_type) > 0) {
    H5Handle type = utf8_string_type();
    char* data = nullptr;
    NLA_CHECK_H5(H5Aread(attribute, type, &data));
    std::string value = data ? data : "";
    H5free_memory(data);
    return value;
  }
  size_t size = H5Tget_size(file_type);
  std::string value(size, '\0');
  NLA_CHECK_H5(H5Aread(attribute, file_type, value.data()));
  value.resize(value.find('\0') == std::string::npos ? size : value.find('\0'));
  return value;
}

int64_t read_int_attribute(hid_t object, const std::string& name) {
  H5Handle attribute(NLA_CHECK_H5(H5Aopen(object, name.c_str(), H5P_DEFAULT)));
  int64_t value = 0;
  NLA_CHECK_H5(H5Aread(attribute, H5T_NATIVE_INT64, &value));
  return value;
}

H5Handle create_group_path(hid_t location, const std::string& path) {
  H5Handle properties(NLA_CHECK_H5(H5Pcreate(H5P_LINK_CREATE)));
  NLA_CHECK_H5(H5Pset_create_intermediate_group(properties, 1));
  return H5Handle(NLA_CHECK_H5(H5Gcreate2(location, path.c_str(), properties, H5P_DEFAULT, H5P_DEFAULT)));
}

static H5Handle link_create_properties() {
  H5Handle properties(NLA_CHECK_H5(H5Pcreate(H5P_LINK_CREATE)));
  NLA_CHECK_H5(H5Pset_create_intermediate_group(properties, 1));
  return properties;
}

void write_string_dataset(hid_t location, const std::string& path, const std::vector<std::string>& values) {
  if (link_exists(location, path)) NLA_CHECK_H5(H5Ldelete(location, path.c_str(), H5P_DEFAULT));
  H5Handle type = utf8_string_type();
  hsize_t size = values.size();
  H5Handle space(NLA_CHECK_H5(H5Screate_simple(1, &size, nullptr)));
  H5Handle link_properties = link_create_properties();
  H5Handle dataset(
      NLA_CHECK_H5(H5Dcreate2(location, path.c_str(), type, space, link_properties, H5P_DEFAULT, H5P_DEFAULT)));
  std::vector<const char*> pointers;
  pointers.reserve(values.size());
  for (const auto& value : values) pointers.push_back(value.c_str());
  if (!values.empty()) NLA_CHECK_H5(H5Dwrite(dataset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, pointers.data()));
}

std::vector<std::string> read_string_dataset(hid_t location, const std::string& path) {
  H5Handle dataset(NLA_CHECK_H5(H5Dopen2(location, path.c_str(), H5P_DEFAULT)));
  H5Handle space(NLA_CHECK_H5(H5Dget_space(dataset)));
  hssize_t count = NLA_CHECK_H5(H5Sget_simple_extent_npoints(space));
  std::vector<char*> pointers(count, nullptr);
  H5Handle type = utf8_string_type();
  if (count > 0) NLA_CHECK_H5(H5Dread(dataset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, pointers.data()));
  std::vector<std::string> values;
  values.reserve(count);
  for (char* pointer : pointers) values.emplace_back(pointer ? pointer : "");
  if (count > 0) NLA_CHECK_H5(H5Dvlen_reclaim(type, space, H5P_DEFAULT, pointers.data()));
  return values;
}

std::string read_string_element(hid_t dataset, int64_t index) {
  H5Handle file_space(NLA_CHECK_H5(H5Dget_space(dataset)));
  hsize_t start = index, count = 1;
  NLA_CHECK_H5(H5Sselect_hyperslab(file_space, H5S_SELECT_SET, &start, nullptr, &count, nullptr));
  H5Handle memory_space(NLA_CHECK_H5(H5Screate_simple(1, &count, nullptr)));
  H5Handle type = utf8_string_type();
  char* pointer = nullptr;
  NLA_CHECK_H5(H5Dread(dataset, type, memory_space, file_space, H5P_DEFAULT, &pointer));
  std::string value = pointer ? pointer : "";
  NLA_CHECK_H5(H5Dvlen_reclaim(type, memory_space, H5P_DEFAULT, &pointer));
  return value;
}

template <typename T>
static hid_t native_type() {
  if constexpr (std::is_same_v<T, int64_t>) return H5T_NATIVE_INT64;
  else if constexpr (std::is_same_v<T, int32_t>) return H5T_NATIVE_INT32;
  else if constexpr (std::is_same_v<T, uint8_t>) return H5T_NATIVE_UINT8;
  else if constexpr (std::is_same_v<T, float>) return H5T_NATIVE_FLOAT;
  else if constexpr (std::is_same_v<T, double>) return H5T_NATIVE_DOUBLE;
  else static_assert(sizeof(T) == 0, "unsupported type");
}

template <typename T>
static hid_t file_type() {
  if constexpr (std::is_same_v<T, int64_t>) return H5T_STD_I64LE;
  else if constexpr (std::is_same_v<T, int32_t>) return H5T_STD_I32LE;
  else if constexpr (std::is_same_v<T, uint8_t>) return H5T_STD_U8LE;
  else if constexpr (std::is_same_v<T, float>) return H5T_IEEE_F32LE;
  else return H5T_IEEE_F64LE;
}

template <typename T>
void write_vector_dataset(hid_t location, const std::string& path, const std::vector<T>& values) {
  if (link_exists(location, path)) NLA_CHECK_H5(H5Ldelete(location, path.c_str(), H5P_DEFAULT));
  hsize_t size = values.size();
  H5Handle space(NLA_CHECK_H5(H5Screate_simple(1, &size, nullptr)));
  H5Handle link_properties = link_create_properties();
  H5Handle dataset(NLA_CHECK_H5(
      H5Dcreate2(location, path.c_str(), file_type<T>(), space, link_properties, H5P_DEFAULT, H5P_DEFAULT)));
  if (!values.empty())
    NLA_CHECK_H5(H5Dwrite(dataset, native_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()));
}

template <typename T>
std::vector<T> read_vector_dataset(hid_t location, const std::string& path) {
  H5Handle dataset(NLA_CHECK_H5(H5Dopen2(location, path.c_str(), H5P_DEFAULT)));
  H5Handle space(NLA_CHECK_H5(H5Dget_space(dataset)));
  std::vector<T> values(NLA_CHECK_H5(H5Sget_simple_extent_npoints(space)));
  if (!values.empty())
    NLA_CHECK_H5(H5Dread(dataset, native_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()));
  return values;
}

#define NLA_INSTANTIATE(T)                                                                    \
  template void write_vector_dataset<T>(hid_t, const std::string&, const std::vector<T>&); \
  template std::vector<T> read_vector_dataset<T>(hid_t, const std::string&);
NLA_INSTANTIATE(int64_t)
NLA_INSTANTIATE(int32_t)
NLA_INSTANTIATE(uint8_t)
NLA_INSTANTIATE(float)
NLA_INSTANTIATE(double)
#undef NLA_INSTANTIATE

}  // namespace nla::store
