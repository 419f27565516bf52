// audit.h5 and summary.csv of `nla steer-audit` (include/nla/steer/audit_file.hpp).
#include "nla/steer/audit_file.hpp"

#include <hdf5.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <functional>
#include <numeric>

#include "nla/core/atomic_file.hpp"
#include "nla/core/error.hpp"
#include "nla/eval/metrics.hpp"  // median_of
#include "nla/store/hdf5_util.hpp"

namespace nla::steer {

namespace {

using store::H5Handle;

template <typename T, typename Record, typename Field>
std::vector<T> column(const std::vector<Record>& records, Field field) {
  std::vector<T> values;
  values.reserve(records.size());
  for (const auto& record : records) values.push_back(static_cast<T>(field(record)));
  return values;
}

}  // namespace

std::vector<std::string> audit_summary_metrics(bool with_concept_words) {
  std::vector<std::string> metrics = {"cos_v", "proj_v", "cos_dir", "act_cos_v", "act_proj_v", "kl"};
  if (with_concept_words) metrics.push_back("mention_rate");
  metrics.push_back("failure_rate");
  return metrics;
}

void write_audit(const AuditResults& r, const std::string& path) {
  store::silence_hdf5_errors();
  write_path_atomic(path, [&](const std::string& temp) {
    H5Handle file(NLA_CHECK_H5(H5Fcreate(temp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)));
    store::write_attribute(file, "format", std::string(kAuditFormat));
    store::write_attribute(file, "version", kAuditVersion);
    store::write_attribute(file, "layer", r.layer);
    store::write_attribute(file, "median_norm", r.median_norm);
    store::write_attribute(file, "vector_norm", r.vector_norm);
    store::write_attribute(file, "concept_words", nlohmann::json(r.concept_words).dump());
    store::write_attribute(file, "seed", r.seed);
    for (const auto& [name, value] : r.attributes) store::write_attribute(file, name, value);
    store::write_vector_dataset(file, "scales", r.scales);
    store::write_string_dataset(file, "prompts", r.prompts);

    const auto& s = r.samples;
    store::create_group_path(file, "samples");
    store::write_string_dataset(file, "samples/direction", column<std::string>(s, [](auto& x) { return x.direction; }));
    store::write_vector_dataset(file, "samples/scale", column<double>(s, [](auto& x) { return x.scale; }));
    store::write_vector_dataset(file, "samples/prompt", column<int64_t>(s, [](auto& x) { return x.prompt; }));
    store::write_vector_dataset(file, "samples/slot", column<int64_t>(s, [](auto& x) { return x.slot; }));
    store::write_vector_dataset(file, "samples/position", column<int64_t>(s, [](auto& x) { return x.position; }));
    store::write_vector_dataset(file, "samples/cos_v", column<double>(s, [](auto& x) { return x.cos_v; }));
    store::write_vector_dataset(file, "samples/proj_v", column<double>(s, [](auto& x) { return x.proj_v; }));
    store::write_vector_dataset(file, "samples/cos_dir", column<double>(s, [](auto& x) { return x.cos_dir; }));
    store::write_vector_dataset(file, "samples/act_cos_v", column<double>(s, [](auto& x) { return x.act_cos_v; }));
    store::write_vector_dataset(file, "samples/act_proj_v", column<double>(s, [](auto& x) { return x.act_proj_v; }));
    store::write_vector_dataset(file, "samples/kl", column<double>(s, [](auto& x) { return x.kl; }));
    store::write_vector_dataset(file, "samples/mentions", column<uint8_t>(s, [](auto& x) { return x.mentions; }));
    store::write_vector_dataset(file, "samples/failed", column<uint8_t>(s, [](auto& x) { return x.failed; }));
    store::write_string_dataset(file, "samples/description",
                                column<std::string>(s, [](auto& x) { return x.description; }));
    store::write_string_dataset(file, "samples/explanation",
                                column<std::string>(s, [](auto& x) { return x.explanation; }));

    const auto& c = r.continuations;
    store::create_group_path(file, "continuations");
    store::write_string_dataset(file, "continuations/direction",
                                column<std::string>(c, [](auto& x) { return x.direction; }));
    store::write_vector_dataset(file, "continuations/scale", column<double>(c, [](auto& x) { return x.scale; }));
    store::write_vector_dataset(file, "continuations/prompt", column<int64_t>(c, [](auto& x) { return x.prompt; }));
    store::write_string_dataset(file, "continuations/text", column<std::string>(c, [](auto& x) { return x.text; }));
    store::write_vector_dataset(file, "continuations/tokens", column<int64_t>(c, [](auto& x) { return x.tokens; }));
    NLA_CHECK_H5(H5Fclose(file.release()));
  });
}

std::vector<double> audit_values(const AuditResults& results, const std::string& direction, double scale,
                                 const std::string& metric) {
  static const std::map<std::string, std::function<double(const AuditSample&)>> metric_of = {
      {"cos_v", [](const AuditSample& x) { return x.cos_v; }},
      {"proj_v", [](const AuditSample& x) { return x.proj_v; }},
      {"cos_dir", [](const AuditSample& x) { return x.cos_dir; }},
      {"act_cos_v", [](const AuditSample& x) { return x.act_cos_v; }},
      {"act_proj_v", [](const AuditSample& x) { return x.act_proj_v; }},
      {"kl", [](const AuditSample& x) { return x.kl; }},
      {"mention_rate", [](const AuditSample& x) { return x.mentions ? 1.0 : 0.0; }},
      {"failure_rate", [](const AuditSample& x) { return x.failed ? 1.0 : 0.0; }}};
  const auto& value_of = metric_of.at(metric);
  std::vector<double> kept;
  for (const auto& sample : results.samples) {
    if (sample.direction != direction || sample.scale != scale) continue;
    const double value = value_of(sample);
    if (!std::isnan(value)) kept.push_back(value);
  }
  return kept;
}

void write_audit_summary(const AuditResults& r, const std::string& path) {
  AtomicFile file(path);
  auto& out = file.stream();
  out << "direction,scale,metric,mean,median,std,n\n";
  for (const char* direction : {kVectorDirection, kRandomDirection})
    for (double scale : r.scales)
      for (const auto& metric : audit_summary_metrics(!r.concept_words.empty())) {
        const std::vector<double> kept = audit_values(r, direction, scale, metric);
        const double mean =
            kept.empty() ? std::nan("") : std::accumulate(kept.begin(), kept.end(), 0.0) / static_cast<double>(kept.size());
        double variance = 0;
        for (double x : kept) variance += (x - mean) * (x - mean);
        const double std_dev = kept.empty() ? std::nan("") : std::sqrt(variance / static_cast<double>(kept.size()));
        char line[256];
        std::snprintf(line, sizeof line, "%s,%.10g,%s,%.10g,%.10g,%.10g,%zu\n", direction, scale, metric.c_str(), mean,
                      eval::median_of(kept), std_dev, kept.size());
        out << line;
      }
  file.commit();
}

}  // namespace nla::steer
