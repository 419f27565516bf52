// results.h5 and summary.csv of `nla eval` (see include/nla/eval/results_file.hpp): writing
// (to a temporary name, renamed when complete), reading, and merging split sweeps.
#include "nla/eval/results_file.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>

#include "nla/core/atomic_file.hpp"
#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/eval/metrics.hpp"  // defines: clc_matrix, median_of
#include "nla/store/hdf5_util.hpp"

namespace nla::eval {

namespace {

using store::H5Handle;

// ---- HDF5 arrays and attributes ---------------------------------------------------------

hid_t h5_type_of(at::ScalarType type) {
  switch (type) {
    case at::kFloat: return H5T_NATIVE_FLOAT;
    case at::kDouble: return H5T_NATIVE_DOUBLE;
    case at::kLong: return H5T_NATIVE_INT64;
    case at::kInt: return H5T_NATIVE_INT32;
    case at::kByte: return H5T_NATIVE_UINT8;
    default: NLA_THROW("no HDF5 type for ", type);
  }
}

void write_array(hid_t file, const std::string& path, const at::Tensor& tensor) {
  auto t = tensor.contiguous();
  std::vector<hsize_t> dims(t.sizes().begin(), t.sizes().end());
  H5Handle space(NLA_CHECK_H5(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr)));
  H5Handle link(NLA_CHECK_H5(H5Pcreate(H5P_LINK_CREATE)));
  NLA_CHECK_H5(H5Pset_create_intermediate_group(link, 1));
  H5Handle dataset(NLA_CHECK_H5(
      H5Dcreate2(file, path.c_str(), h5_type_of(t.scalar_type()), space, link, H5P_DEFAULT, H5P_DEFAULT)));
  if (t.numel() > 0)
    NLA_CHECK_H5(H5Dwrite(dataset, h5_type_of(t.scalar_type()), H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr()));
}

at::Tensor read_array(hid_t file, const std::string& path, at::ScalarType type, const std::string& source) {
  NLA_CHECK_INPUT(store::link_exists(file, path), source, ": missing dataset ", path);
  H5Handle dataset(NLA_CHECK_H5(H5Dopen2(file, path.c_str(), H5P_DEFAULT)));
  H5Handle space(NLA_CHECK_H5(H5Dget_space(dataset)));
  int rank = NLA_CHECK_H5(H5Sget_simple_extent_ndims(space));
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  NLA_CHECK_H5(H5Sget_simple_extent_dims(space, dims.data(), nullptr));
  auto out = at::empty(std::vector<int64_t>(dims.begin(), dims.end()), type);
  if (out.numel() > 0) NLA_CHECK_H5(H5Dread(dataset, h5_type_of(type), H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data_ptr()));
  return out;
}

template <typename T>
void write_array_attribute(hid_t object, const std::string& name, const std::vector<T>& values, hid_t type) {
  hsize_t size = values.size();
  H5Handle space(NLA_CHECK_H5(H5Screate_simple(1, &size, nullptr)));
  H5Handle attribute(NLA_CHECK_H5(H5Acreate2(object, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT)));
  NLA_CHECK_H5(H5Awrite(attribute, type, values.data()));
}

template <typename T>
std::vector<T> read_array_attribute(hid_t object, const std::string& name, hid_t type, const std::string& source) {
  NLA_CHECK_INPUT(store::attribute_exists(object, name), source, ": missing attribute ", name);
  H5Handle attribute(NLA_CHECK_H5(H5Aopen(object, name.c_str(), H5P_DEFAULT)));
  H5Handle space(NLA_CHECK_H5(H5Aget_space(attribute)));
  hssize_t count = NLA_CHECK_H5(H5Sget_simple_extent_npoints(space));
  std::vector<T> values(static_cast<size_t>(count));
  if (count > 0) NLA_CHECK_H5(H5Aread(attribute, type, values.data()));
  return values;
}

// String attributes that a merge must find equal in every part (they define the run).
const std::vector<std::string> kRunDefiningAttributes = {"av", "ar", "store", "var_nrm_source", "seed", "samples",
                                                         "pool", "max_new_tokens", "temperature", "av_descriptions",
                                                         "ar_target", "mean_condition"};

}  // namespace

// ---- results.h5 ------------------------------------------------------------------------

void write_results(const SweepResults& r, const std::string& path) {
  store::silence_hdf5_errors();
  write_path_atomic(path, [&](const std::string& temp) {
    H5Handle file(NLA_CHECK_H5(H5Fcreate(temp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)));
    store::write_attribute(file, "format", std::string(kEvalFormat));
    store::write_attribute(file, "version", kEvalVersion);
    store::write_attribute(file, "anchor_layer", int64_t{r.anchor_layer});
    store::write_attribute(file, "recall_pool", r.recall_pool);
    std::vector<int64_t> layers(r.layers.begin(), r.layers.end());
    write_array_attribute(file, "layers", layers, H5T_NATIVE_INT64);
    write_array_attribute(file, "anchor_median_norm", std::vector<double>{r.anchor_median_norm}, H5T_NATIVE_DOUBLE);
    for (const auto& [name, value] : r.attributes) store::write_attribute(file, name, value);
    write_array(file, "samples/row", at::tensor(r.rows, at::kLong));
    write_array(file, "samples/doc", at::tensor(r.documents, at::kLong));
    write_array(file, "samples/position", at::tensor(std::vector<int32_t>(r.positions), at::kInt));
    for (const auto& [condition, metrics] : r.metrics)
      for (const auto& [metric, values] : metrics) write_array(file, "metrics/" + condition + "/" + metric, values);
    for (const auto& [condition, metrics] : r.layer_metrics)
      for (const auto& [metric, values] : metrics) write_array(file, "layer_metrics/" + condition + "/" + metric, values);
    write_array(file, "median_norm", r.median_norm);
    write_array(file, "reconstruction_scale", r.reconstruction_scale);
    write_array(file, "pool_rows", at::tensor(r.pool_rows, at::kLong));
    for (const auto& [condition, values] : r.reconstructions) write_array(file, "reconstructions/" + condition, values);
    for (const auto& [condition, values] : r.failed) write_array(file, "failed/" + condition, values);
    for (const auto& [condition, texts] : r.descriptions)
      for (size_t li = 0; li < r.layers.size(); ++li) {
        const size_t n = r.rows.size();
        std::vector<std::string> layer_texts(texts.begin() + static_cast<int64_t>(li * n),
                                             texts.begin() + static_cast<int64_t>((li + 1) * n));
        store::write_string_dataset(file, "descriptions/" + condition + "/" + std::to_string(r.layers[li]), layer_texts);
      }
    write_array(file, "shuffled/permutation", r.permutation);
    write_array(file, "means", r.means);
    write_array(file, "var_nrm", r.var_nrm);
    write_array(file, "clc", r.clc);
    for (const auto& [layer, pca] : r.pca) {
      const std::string group = "pca/" + std::to_string(layer);
      write_array(file, group + "/truth", pca.truth);
      write_array(file, group + "/reconstruction", pca.reconstruction);
      H5Handle handle(NLA_CHECK_H5(H5Gopen2(file, group.c_str(), H5P_DEFAULT)));
      write_array_attribute(handle, "explained_variance",
                            std::vector<double>{pca.explained_variance[0], pca.explained_variance[1]}, H5T_NATIVE_DOUBLE);
    }
    NLA_CHECK_H5(H5Fclose(file.release()));
  });
}

SweepResults read_results(const std::string& path) {
  store::silence_hdf5_errors();
  NLA_CHECK_INPUT(fs::exists(path), path, ": cannot be read (expected an nla eval results.h5)");
  H5Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  NLA_CHECK_INPUT(file.valid(), path, ": not an HDF5 file");
  NLA_CHECK_INPUT(store::attribute_exists(file, "format") && store::read_string_attribute(file, "format") == kEvalFormat,
                  path, ": attribute 'format': expected \"", kEvalFormat, "\"");
  const int64_t version = store::attribute_exists(file, "version") ? store::read_int_attribute(file, "version") : 0;
  NLA_CHECK_INPUT(version == kEvalVersion, path, ": attribute 'version': expected ", kEvalVersion, ", got ", version,
                  " (written before reconstructions were put in the activation's scale: run nla eval again)");
  SweepResults r;
  r.anchor_layer = static_cast<int>(store::read_int_attribute(file, "anchor_layer"));
  r.recall_pool = store::read_int_attribute(file, "recall_pool");
  for (int64_t layer : read_array_attribute<int64_t>(file, "layers", H5T_NATIVE_INT64, path))
    r.layers.push_back(static_cast<int>(layer));
  r.anchor_median_norm = read_array_attribute<double>(file, "anchor_median_norm", H5T_NATIVE_DOUBLE, path).at(0);
  for (const auto& name : kRunDefiningAttributes)
    r.attributes[name] = store::attribute_exists(file, name) ? store::read_string_attribute(file, name) : "";
  for (const char* name : {"created_by", "model", "device", "precision"})
    if (store::attribute_exists(file, name)) r.attributes[name] = store::read_string_attribute(file, name);
  r.var_nrm_source = r.attributes["var_nrm_source"];
  r.ar_target = r.attributes["ar_target"];
  auto to_vector = [](const at::Tensor& t, auto type_tag) {
    using T = decltype(type_tag);
    return std::vector<T>(t.data_ptr<T>(), t.data_ptr<T>() + t.numel());
  };
  r.rows = to_vector(read_array(file, "samples/row", at::kLong, path), int64_t{});
  r.documents = to_vector(read_array(file, "samples/doc", at::kLong, path), int64_t{});
  r.positions = to_vector(read_array(file, "samples/position", at::kInt, path), int32_t{});
  for (const auto& condition : kConditions) {
    for (const auto& metric : kMetrics)
      r.metrics[condition][metric] = read_array(file, "metrics/" + condition + "/" + metric, at::kDouble, path);
    for (const auto& metric : kLayerMetrics)
      r.layer_metrics[condition][metric] =
          read_array(file, "layer_metrics/" + condition + "/" + metric, at::kDouble, path);
  }
  r.median_norm = read_array(file, "median_norm", at::kDouble, path);
  r.reconstruction_scale = read_array(file, "reconstruction_scale", at::kDouble, path);
  r.pool_rows = to_vector(read_array(file, "pool_rows", at::kLong, path), int64_t{});
  for (const auto& condition : kGeneratedConditions) {
    r.reconstructions[condition] = read_array(file, "reconstructions/" + condition, at::kFloat, path);
    r.failed[condition] = read_array(file, "failed/" + condition, at::kByte, path);
    auto& texts = r.descriptions[condition];
    for (int layer : r.layers) {
      auto layer_texts = store::read_string_dataset(file, "descriptions/" + condition + "/" + std::to_string(layer));
      texts.insert(texts.end(), layer_texts.begin(), layer_texts.end());
    }
  }
  r.permutation = read_array(file, "shuffled/permutation", at::kLong, path);
  r.means = read_array(file, "means", at::kFloat, path);
  r.var_nrm = read_array(file, "var_nrm", at::kDouble, path);
  r.clc = read_array(file, "clc", at::kDouble, path);
  for (int layer : r.layers) {
    const std::string group = "pca/" + std::to_string(layer);
    if (!store::link_exists(file, group)) continue;
    PcaData pca;
    pca.truth = read_array(file, group + "/truth", at::kFloat, path);
    pca.reconstruction = read_array(file, group + "/reconstruction", at::kFloat, path);
    H5Handle handle(NLA_CHECK_H5(H5Gopen2(file, group.c_str(), H5P_DEFAULT)));
    auto variance = read_array_attribute<double>(handle, "explained_variance", H5T_NATIVE_DOUBLE, path);
    pca.explained_variance[0] = variance.at(0);
    pca.explained_variance[1] = variance.at(1);
    r.pca[layer] = pca;
  }
  return r;
}

void write_summary_csv(const SweepResults& r, const std::string& path) {
  AtomicFile file(path);
  auto& out = file.stream();
  out << "layer,condition,metric,mean,median,std,n\n";
  auto row = [&](int layer, const std::string& condition, const std::string& metric, const at::Tensor& values) {
    auto v = values.to(at::kDouble).contiguous();
    std::vector<double> kept;
    for (int64_t i = 0; i < v.numel(); ++i)
      if (!std::isnan(v.data_ptr<double>()[i])) kept.push_back(v.data_ptr<double>()[i]);
    double mean = kept.empty() ? std::nan("") : std::accumulate(kept.begin(), kept.end(), 0.0) / kept.size();
    double variance = 0;
    for (double x : kept) variance += (x - mean) * (x - mean);
    double std_dev = kept.empty() ? std::nan("") : std::sqrt(variance / kept.size());  // population (numpy's ddof=0)
    char line[256];
    std::snprintf(line, sizeof line, "%d,%s,%s,%.10g,%.10g,%.10g,%zu\n", layer, condition.c_str(), metric.c_str(), mean,
                  median_of(kept), std_dev, kept.size());
    out << line;
  };
  // A per-layer figure is one number: mean and median are it, std is NaN.
  auto figure_row = [&](int layer, const std::string& condition, const std::string& metric, double value) {
    char line[256];
    std::snprintf(line, sizeof line, "%d,%s,%s,%.10g,%.10g,nan,%zu\n", layer, condition.c_str(), metric.c_str(), value,
                  value, r.rows.size());
    out << line;
  };
  for (size_t li = 0; li < r.layers.size(); ++li) {
    for (const auto& condition : kConditions)
      for (const auto& metric : kMetrics) row(r.layers[li], condition, metric, r.metrics.at(condition).at(metric)[li]);
    for (const auto& condition : kConditions)
      for (const auto& metric : kLayerMetrics)
        figure_row(r.layers[li], condition, metric,
                   r.layer_metrics.at(condition).at(metric)[static_cast<int64_t>(li)].item<double>());
    for (const auto& condition : kGeneratedConditions) row(r.layers[li], condition, "failed", r.failed.at(condition)[li]);
  }
  file.commit();
}

SweepResults merge_results(const std::vector<SweepResults>& parts) {
  NLA_CHECK_INPUT(!parts.empty(), "eval-merge: expected at least one part");
  const auto& first = parts.front();
  std::set<int> seen;
  for (const auto& part : parts) {
    NLA_CHECK_INPUT(part.rows == first.rows && part.anchor_layer == first.anchor_layer &&
                        part.anchor_median_norm == first.anchor_median_norm && part.recall_pool == first.recall_pool &&
                        part.pool_rows == first.pool_rows,
                    "eval-merge: parts differ in their samples, anchor layer or recall pool (expected one sweep split "
                    "by layers)");
    for (const auto& name : kRunDefiningAttributes)
      NLA_CHECK_INPUT(part.attributes.at(name) == first.attributes.at(name), "eval-merge: attribute '", name,
                      "' differs between parts ('", part.attributes.at(name), "' vs '", first.attributes.at(name), "')");
    for (int layer : part.layers)
      NLA_CHECK_INPUT(seen.insert(layer).second, "eval-merge: layer ", layer, " is in more than one part");
  }
  // Parts in layer order, layers ascending inside each (a single run's order).
  std::vector<const SweepResults*> order;
  for (const auto& part : parts) order.push_back(&part);
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->layers.front() < b->layers.front(); });
  SweepResults merged;
  merged.anchor_layer = first.anchor_layer;
  merged.rows = first.rows;
  merged.documents = first.documents;
  merged.positions = first.positions;
  merged.anchor_median_norm = first.anchor_median_norm;
  merged.recall_pool = first.recall_pool;
  merged.var_nrm_source = first.var_nrm_source;
  merged.ar_target = first.ar_target;
  merged.pool_rows = first.pool_rows;
  merged.attributes = first.attributes;
  auto cat = [&](auto get) {
    std::vector<at::Tensor> pieces;
    for (auto* part : order) pieces.push_back(get(*part));
    return at::cat(pieces, 0);
  };
  for (auto* part : order) {
    merged.layers.insert(merged.layers.end(), part->layers.begin(), part->layers.end());
    for (const auto& [layer, pca] : part->pca) merged.pca[layer] = pca;
    for (const auto& condition : kGeneratedConditions) {
      const auto& texts = part->descriptions.at(condition);
      merged.descriptions[condition].insert(merged.descriptions[condition].end(), texts.begin(), texts.end());
    }
  }
  NLA_CHECK_INPUT(std::is_sorted(merged.layers.begin(), merged.layers.end()),
                  "eval-merge: parts interleave their layers (expected contiguous layer blocks)");
  for (const auto& condition : kConditions) {
    for (const auto& metric : kMetrics)
      merged.metrics[condition][metric] = cat([&](const SweepResults& p) { return p.metrics.at(condition).at(metric); });
    for (const auto& metric : kLayerMetrics)
      merged.layer_metrics[condition][metric] =
          cat([&](const SweepResults& p) { return p.layer_metrics.at(condition).at(metric); });
  }
  merged.median_norm = cat([](const SweepResults& p) { return p.median_norm; });
  merged.reconstruction_scale = cat([](const SweepResults& p) { return p.reconstruction_scale; });
  for (const auto& condition : kGeneratedConditions) {
    merged.reconstructions[condition] = cat([&](const SweepResults& p) { return p.reconstructions.at(condition); });
    merged.failed[condition] = cat([&](const SweepResults& p) { return p.failed.at(condition); });
  }
  merged.permutation = cat([](const SweepResults& p) { return p.permutation; });
  merged.means = cat([](const SweepResults& p) { return p.means; });
  merged.var_nrm = cat([](const SweepResults& p) { return p.var_nrm; });
  merged.clc = clc_matrix(merged.reconstructions.at("av"));
  return merged;
}

}  // namespace nla::eval
