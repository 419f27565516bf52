// Anchor coverage (see include/nla/eval/coverage.hpp). Every rule here has its twin in
// analysis/nla_coverage.py; change both together (the test compares their coverage.csv).
#include "nla/eval/coverage.hpp"

#include <hdf5.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

#include "nla/core/atomic_file.hpp"
#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/store/hdf5_util.hpp"

namespace nla::eval {

namespace {

using store::H5Handle;

const double kNaN = std::numeric_limits<double>::quiet_NaN();

// numpy's pairwise summation of doubles (numpy/core/src/umath/loops_utils.h.src): eight
// accumulators up to 128 values, halves (cut at a multiple of 8) above.
double numpy_pairwise_sum(const double* a, int64_t n) {
  if (n < 8) {
    double sum = 0.;
    for (int64_t i = 0; i < n; ++i) sum += a[i];
    return sum;
  }
  if (n <= 128) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    int64_t i = 8;
    for (; i < n - (n % 8); i += 8)
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    double sum = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) sum += a[i];
    return sum;
  }
  int64_t half = n / 2;
  half -= half % 8;
  return numpy_pairwise_sum(a, half) + numpy_pairwise_sum(a + half, n - half);
}

// "0-3" for consecutive layers, else "0, 2, 5" (the statement's wording).
std::string join(const std::vector<int>& values, const char* separator = ", ") {
  std::string out;
  for (size_t i = 0; i < values.size(); ++i) out += (i ? separator : "") + std::to_string(values[i]);
  return out;
}

std::string range_text(const std::vector<int>& range) {
  if (range.empty()) return "";
  bool consecutive = range.back() - range.front() + 1 == static_cast<int>(range.size());
  return consecutive ? std::to_string(range.front()) + "-" + std::to_string(range.back()) : join(range);
}

std::string printf_text(const char* format, double value) {
  char text[64];
  std::snprintf(text, sizeof text, format, value);
  return text;
}

nlohmann::json number_or_null(double value) { return std::isfinite(value) ? nlohmann::json(value) : nlohmann::json(); }

}  // namespace

double numpy_nanmean(const double* values, int64_t n) {
  std::vector<double> zeroed(values, values + n);  // np.nanmean: NaN -> 0, then sum / count
  int64_t count = 0;
  for (double& v : zeroed) {
    if (std::isnan(v)) v = 0.0;
    else ++count;
  }
  return (0.0 + numpy_pairwise_sum(zeroed.data(), n)) / static_cast<double>(count);  // 0/0 = NaN
}

std::string python_float_repr(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  if (value == 0) return std::signbit(value) ? "-0.0" : "0.0";
  // Shortest round-trip digits (as Python's repr), then Python's layout: positional for
  // exponents -4 < decpt <= 16, else d.ddde+XX.
  char buffer[64];
  auto [end, error] = std::to_chars(buffer, buffer + sizeof buffer, std::fabs(value), std::chars_format::scientific);
  NLA_CHECK(error == std::errc(), "to_chars failed for ", value);
  const std::string text(buffer, end);  // "1.2345e-05"
  const size_t e = text.find('e');
  std::string digits;
  for (char c : text.substr(0, e))
    if (c != '.') digits += c;
  const int decpt = std::stoi(text.substr(e + 1)) + 1;  // value = 0.DIGITS x 10^decpt
  std::string out;
  if (decpt <= -4 || decpt > 16) {
    out = digits.substr(0, 1) + (digits.size() > 1 ? "." + digits.substr(1) : "");
    char exponent[16];
    std::snprintf(exponent, sizeof exponent, "e%+03d", decpt - 1);
    out += exponent;
  } else if (decpt <= 0) {
    out = "0." + std::string(static_cast<size_t>(-decpt), '0') + digits;
  } else if (decpt >= static_cast<int>(digits.size())) {
    out = digits + std::string(static_cast<size_t>(decpt) - digits.size(), '0') + ".0";
  } else {
    out = digits.substr(0, static_cast<size_t>(decpt)) + "." + digits.substr(static_cast<size_t>(decpt));
  }
  return (value < 0 ? "-" : "") + out;
}

AnchorMeans read_anchor_means(const std::string& run_dir, const std::string& name, const std::string& metric) {
  const std::string path = run_dir + "/results.h5";
  store::silence_hdf5_errors();
  NLA_CHECK_INPUT(fs::exists(path), path, ": no such file (expected an nla eval run directory)");
  H5Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  NLA_CHECK_INPUT(file.valid(), path, ": not an HDF5 file");
  NLA_CHECK_INPUT(store::attribute_exists(file, "format") && store::read_string_attribute(file, "format") == "nla-eval",
                  path, ": attribute 'format': expected \"nla-eval\"");
  AnchorMeans run;
  run.name = name;
  run.anchor = static_cast<int>(store::read_int_attribute(file, "anchor_layer"));
  // attribute layers: int64 [L]
  NLA_CHECK_INPUT(store::attribute_exists(file, "layers"), path, ": missing attribute layers");
  H5Handle attribute(NLA_CHECK_H5(H5Aopen(file, "layers", H5P_DEFAULT)));
  H5Handle attribute_space(NLA_CHECK_H5(H5Aget_space(attribute)));
  std::vector<int64_t> layers(static_cast<size_t>(NLA_CHECK_H5(H5Sget_simple_extent_npoints(attribute_space))));
  if (!layers.empty()) NLA_CHECK_H5(H5Aread(attribute, H5T_NATIVE_INT64, layers.data()));
  // dataset metrics/av/<metric>: float64 [L, n]
  const std::string key = "metrics/av/" + metric;
  NLA_CHECK_INPUT(store::link_exists(file, key), path, ": dataset '", key, "' missing");
  H5Handle dataset(NLA_CHECK_H5(H5Dopen2(file, key.c_str(), H5P_DEFAULT)));
  H5Handle space(NLA_CHECK_H5(H5Dget_space(dataset)));
  hsize_t dims[2] = {0, 0};
  NLA_CHECK_INPUT(NLA_CHECK_H5(H5Sget_simple_extent_ndims(space)) == 2, path, ": dataset '", key,
                  "': expected 2 dimensions [layers, samples]");
  NLA_CHECK_H5(H5Sget_simple_extent_dims(space, dims, nullptr));
  NLA_CHECK_INPUT(dims[0] == layers.size(), path, ": dataset '", key, "': ", dims[0], " rows, expected one per layer (",
                  layers.size(), ")");
  std::vector<double> values(static_cast<size_t>(dims[0] * dims[1]));
  if (!values.empty()) NLA_CHECK_H5(H5Dread(dataset, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()));
  for (size_t li = 0; li < layers.size(); ++li)
    run.means[static_cast<int>(layers[li])] =
        numpy_nanmean(values.data() + li * dims[1], static_cast<int64_t>(dims[1]));
  return run;
}

std::vector<int> coverage_range(const std::string& spec, const std::vector<int>& evaluated) {
  if (spec == "all") return evaluated;
  int first = 0, last = 0;
  char dash = 0, extra = 0;
  std::istringstream text(spec);
  bool ok = static_cast<bool>(text >> first);
  if (ok && text >> dash) ok = dash == '-' && static_cast<bool>(text >> last) && !(text >> extra);
  else last = first;
  NLA_CHECK_INPUT(ok && first >= 0 && last >= first,
                  "option 'coverage-layers': expected all, A-B or A with 0 <= A <= B, got '", spec, "'");
  std::vector<int> range;
  for (int layer = first; layer <= last; ++layer) range.push_back(layer);
  return range;
}

std::vector<size_t> choose_cover(const std::vector<std::set<int>>& covers,
                                 const std::vector<std::map<int, double>>& scores, const std::vector<int>& range,
                                 int64_t exact_limit, std::string& method) {
  const size_t n = covers.size();
  std::set<int> target;  // the coverable layers of the range
  for (const auto& cover : covers) target.insert(cover.begin(), cover.end());
  method = "exact";
  if (target.empty()) return {};
  auto covers_target = [&](const std::vector<size_t>& subset) {
    std::set<int> covered;
    for (size_t a : subset) covered.insert(covers[a].begin(), covers[a].end());
    return std::includes(covered.begin(), covered.end(), target.begin(), target.end());
  };
  // The tie-break: summed best mean over the target layers, added in layer order.
  auto value = [&](const std::vector<size_t>& subset) {
    double total = 0.0;
    for (int layer : target) {
      double best = 0;  // Python's max(): the first value, replaced only by a greater one
      for (size_t i = 0; i < subset.size(); ++i) {
        auto it = scores[subset[i]].find(layer);
        double v = it == scores[subset[i]].end() ? -std::numeric_limits<double>::infinity() : it->second;
        if (i == 0 || v > best) best = v;
      }
      total += best;
    }
    return total;
  };
  if (static_cast<int64_t>(n) <= exact_limit) {
    for (size_t size = 1; size <= n; ++size) {
      // Subsets of `size` indices in lexicographic order (itertools.combinations).
      std::vector<size_t> subset(size), best;
      for (size_t i = 0; i < size; ++i) subset[i] = i;
      double best_value = 0;
      while (true) {
        if (covers_target(subset)) {
          double v = value(subset);
          if (best.empty() || v > best_value) best = subset, best_value = v;
        }
        size_t i = size;  // next combination: bump the rightmost index that can move
        while (i > 0 && subset[i - 1] == n - size + i - 1) --i;
        if (i == 0) break;
        ++subset[i - 1];
        for (size_t j = i; j < size; ++j) subset[j] = subset[j - 1] + 1;
      }
      if (!best.empty()) return best;
    }
  }
  method = "greedy";
  std::vector<size_t> chosen;
  std::set<int> left = target;
  while (!left.empty()) {
    size_t pick = n;
    size_t pick_new = 0;
    double pick_sum = 0;
    for (size_t a = 0; a < n; ++a) {
      if (std::find(chosen.begin(), chosen.end(), a) != chosen.end()) continue;
      size_t fresh = 0;
      for (int layer : covers[a]) fresh += left.count(layer);
      double sum = 0;  // summed mean over the range (0 where absent), left to right
      for (int layer : range) {
        auto it = scores[a].find(layer);
        sum += it == scores[a].end() ? 0.0 : it->second;
      }
      // Python's max() over (fresh, sum): the first of the greatest.
      if (pick == n || fresh > pick_new || (fresh == pick_new && sum > pick_sum))
        pick = a, pick_new = fresh, pick_sum = sum;
    }
    chosen.push_back(pick);
    for (int layer : covers[pick]) left.erase(layer);
  }
  std::sort(chosen.begin(), chosen.end());
  return chosen;
}

CoverageResult compute_coverage(const std::vector<AnchorMeans>& runs, const std::vector<int>& range,
                                 const CoverageOptions& options) {
  CoverageResult r;
  r.range = range;
  std::vector<std::set<int>> covers(runs.size());
  std::vector<std::map<int, double>> scores;
  for (size_t a = 0; a < runs.size(); ++a) {
    scores.push_back(runs[a].means);
    for (int layer : range) {
      auto it = runs[a].means.find(layer);
      if (it != runs[a].means.end() && it->second >= options.min_cosine) covers[a].insert(layer);
    }
  }
  r.chosen = choose_cover(covers, scores, range, options.exact_limit, r.method);
  std::set<int> table_layers(range.begin(), range.end());
  for (const auto& run : runs)
    for (const auto& [layer, mean] : run.means) table_layers.insert(layer);
  for (int layer : table_layers) {
    CoverageRow row;
    row.layer = layer;
    row.in_range = std::find(range.begin(), range.end(), layer) != range.end();
    for (size_t a = 0; a < runs.size(); ++a) {
      auto it = runs[a].means.find(layer);
      if (it == runs[a].means.end() || !std::isfinite(it->second)) continue;
      if (row.best < 0 || it->second > row.best_mean) row.best = static_cast<int>(a), row.best_mean = it->second;
    }
    r.rows.push_back(row);
  }
  for (int layer : range) {
    bool reached = false;
    for (const auto& cover : covers) reached = reached || cover.count(layer);
    if (!reached) r.uncovered.push_back(layer);
  }
  // The best achievable minimum (all anchors together) and the chosen set's minimum.
  r.best_achievable_minimum = std::numeric_limits<double>::infinity();
  r.chosen_minimum = std::numeric_limits<double>::infinity();
  int chosen_weakest = -1;
  for (const auto& row : r.rows) {
    if (!row.in_range) continue;
    double best = row.best < 0 ? kNaN : row.best_mean;
    if (std::isnan(best) && !std::isnan(r.best_achievable_minimum)) {
      r.best_achievable_minimum = kNaN, r.weakest_layer = row.layer;
    } else if (!std::isnan(r.best_achievable_minimum) && best < r.best_achievable_minimum) {
      r.best_achievable_minimum = best, r.weakest_layer = row.layer;
    }
    double chosen_best = -std::numeric_limits<double>::infinity();
    for (size_t a : r.chosen) {
      auto it = runs[a].means.find(row.layer);
      if (it != runs[a].means.end() && it->second > chosen_best) chosen_best = it->second;
    }
    if (chosen_best < r.chosen_minimum) r.chosen_minimum = chosen_best, chosen_weakest = row.layer;
  }
  if (!r.uncovered.empty() || r.chosen.empty()) r.chosen_minimum = kNaN;

  std::vector<int> chosen_anchors;
  for (size_t a : r.chosen) chosen_anchors.push_back(runs[a].anchor);
  const std::string span = range_text(range), threshold = printf_text("%g", options.min_cosine);
  if (r.uncovered.empty()) {
    r.statement = "Anchor set {" + join(chosen_anchors) + "} keeps every layer of " + span + " at " + options.metric +
                  " >= " + threshold + " (" + r.method + " search; lowest mean " +
                  printf_text("%.3f", r.chosen_minimum) + " at layer " + std::to_string(chosen_weakest) + ").";
  } else {
    r.statement = "No set of anchors keeps every layer of " + span + " at " + options.metric + " >= " + threshold +
                  ": layers " + join(r.uncovered) + " stay below it with every anchor; the best achievable minimum is " +
                  (std::isnan(r.best_achievable_minimum)
                       ? "undefined (no anchor was evaluated at layer " + std::to_string(r.weakest_layer) + ")"
                       : printf_text("%.3f", r.best_achievable_minimum) + " (layer " + std::to_string(r.weakest_layer) +
                             ")") +
                  ".";
    if (!r.chosen.empty())
      r.statement +=
          " Smallest set covering the other layers (" + r.method + " search): {" + join(chosen_anchors) + "}.";
  }
  if (r.method == "greedy")
    r.statement += " More than " + std::to_string(options.exact_limit) +
                   " anchors: greedy set cover, which may not be the smallest set.";
  return r;
}

void write_coverage(const std::string& dir, const std::vector<AnchorMeans>& runs, const CoverageResult& r,
                    const CoverageOptions& options, const std::string& created_by) {
  fs::create_directories(dir);
  {
    AtomicFile file(dir + "/coverage.csv");
    auto& out = file.stream();
    out << "layer,in_range,best_anchor,best_mean,best_run";
    for (const auto& run : runs) out << "," << run.name;
    out << "\n";
    for (const auto& row : r.rows) {
      out << row.layer << "," << (row.in_range ? 1 : 0) << ",";
      if (row.best >= 0) out << runs[static_cast<size_t>(row.best)].anchor;
      out << "," << python_float_repr(row.best >= 0 ? row.best_mean : kNaN) << ",";
      if (row.best >= 0) out << runs[static_cast<size_t>(row.best)].name;
      for (const auto& run : runs) {
        auto it = run.means.find(row.layer);
        out << "," << (it == run.means.end() ? "" : python_float_repr(it->second));
      }
      out << "\n";
    }
    file.commit();
  }
  nlohmann::json chosen = nlohmann::json::array(), listed = nlohmann::json::array(), means = nlohmann::json::object();
  for (size_t a : r.chosen) chosen.push_back({{"run", runs[a].name}, {"anchor", runs[a].anchor}});
  for (const auto& run : runs) {
    listed.push_back({{"run", run.name}, {"path", run.name}, {"anchor", run.anchor}});
    nlohmann::json per_layer = nlohmann::json::object();
    for (int layer : r.range) {
      auto it = run.means.find(layer);
      per_layer[std::to_string(layer)] = it == run.means.end() ? nlohmann::json() : number_or_null(it->second);
    }
    means[run.name] = per_layer;
  }
  nlohmann::json summary = {{"metric", options.metric},
                            {"layers_option", options.layers},
                            {"range", {r.range.front(), r.range.back()}},
                            {"range_layers", r.range},
                            {"min_cosine", options.min_cosine},
                            {"method", r.method},
                            {"exact_limit", options.exact_limit},
                            {"covered", r.uncovered.empty()},
                            {"chosen", chosen},
                            {"uncovered_layers", r.uncovered},
                            {"best_achievable_minimum", number_or_null(r.best_achievable_minimum)},
                            {"weakest_layer", r.weakest_layer},
                            {"chosen_minimum", number_or_null(r.chosen_minimum)},
                            {"statement", r.statement},
                            {"runs", listed},
                            {"means", means},
                            {"created_by", created_by}};
  write_file_atomic(dir + "/coverage.json", summary.dump(1) + "\n");
}

}  // namespace nla::eval
