// What `nla steer-audit` writes: RUN/audit.h5 (format "nla-steer-audit", version 1) and
// RUN/summary.csv. Serial: rank 0 only. analysis/nla_steer_report.py reads both (its
// README section lists the layout; the writer below is its definition).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace nla::steer {

inline constexpr const char* kAuditFormat = "nla-steer-audit";
inline constexpr int64_t kAuditVersion = 1;
// The two steering directions: the given vector, and a seeded random direction of the same norm.
inline constexpr const char* kVectorDirection = "vector";
inline constexpr const char* kRandomDirection = "random";

// One steered activation that was verbalized.
struct AuditSample {
  std::string direction;  // kVectorDirection | kRandomDirection
  double scale = 0;       // in units of the layer's median norm
  int64_t prompt = 0;     // index into the prompts
  int64_t slot = 0;       // k-th sampled position of that prompt
  int64_t position = 0;   // token position in prompt + continuation
  double cos_v = 0;       // cosine(reconstruction, v); NaN when the description failed
  double proj_v = 0;      // reconstruction (activation scale) . v / |v|; NaN when failed
  double cos_dir = 0;     // cosine(reconstruction, the direction added); NaN when failed
  double act_cos_v = 0;   // cosine(steered activation, v)
  double act_proj_v = 0;  // steered activation . v / |v|
  double kl = 0;          // KL(steered || unsteered next-token distribution) at this prefix, nats
  bool mentions = false;  // the explanation names a concept word (false when failed)
  bool failed = false;
  std::string description, explanation;
};

// One steered continuation.
struct AuditContinuation {
  std::string direction;
  double scale = 0;
  int64_t prompt = 0;
  std::string text;
  int64_t tokens = 0;
};

struct AuditResults {
  std::vector<double> scales;  // ascending, 0 first
  std::vector<std::string> prompts;
  std::vector<AuditSample> samples;  // sorted by (direction, scale, prompt, slot)
  std::vector<AuditContinuation> continuations;
  int64_t layer = 0;
  double median_norm = 0, vector_norm = 0;
  std::vector<std::string> concept_words;
  int64_t seed = 0;
  std::map<std::string, std::string> attributes;  // provenance (JSON), model, av, ar, vector
};

// audit.h5, written to a temporary name and renamed when complete.
void write_audit(const AuditResults& results, const std::string& path);
// summary.csv: direction,scale,metric,mean,median,std,n (NaN skipped); metrics cos_v, proj_v,
// cos_dir, act_cos_v, act_proj_v, kl, mention_rate (when concept words are given), failure_rate.
void write_audit_summary(const AuditResults& results, const std::string& path);

// Metric names of summary.csv, in its order.
std::vector<std::string> audit_summary_metrics(bool with_concept_words);

// One summary.csv metric's values over the samples of (direction, scale), NaN left out
// (mention_rate and failure_rate: 1 or 0 per sample).
std::vector<double> audit_values(const AuditResults& results, const std::string& direction, double scale,
                                 const std::string& metric);

}  // namespace nla::steer
