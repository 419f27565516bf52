// Reconstruction metrics (see include/nla/eval/metrics.hpp).
#include "nla/eval/metrics.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <unordered_set>
#include <vector>

#include "nla/core/error.hpp"
#include "nla/core/seeding.hpp"

namespace nla::eval {

namespace {

void check_pair(const at::Tensor& truth, const at::Tensor& prediction) {
  NLA_CHECK(truth.dim() == 2 && prediction.sizes() == truth.sizes(), "metrics need equal (N, d) tensors, got ",
            truth.sizes(), " and ", prediction.sizes());
}

// Rows scaled to unit norm; zero rows stay zero.
at::Tensor unit_rows(const at::Tensor& rows) {
  auto norms = rows.norm(2, {1}, /*keepdim=*/true);  // (N, 1)
  return rows / at::where(norms > 0, norms, at::ones_like(norms));
}

}  // namespace

SampleMetrics sample_metrics(const at::Tensor& truth_in, const at::Tensor& prediction_in, const at::Tensor& mean_in) {
  check_pair(truth_in, prediction_in);
  auto x = truth_in.to(at::kDouble), y = prediction_in.to(at::kDouble), mu = mean_in.to(at::kDouble);
  const double d = static_cast<double>(x.size(1));
  auto x_unit = unit_rows(x), y_unit = unit_rows(y);  // (N, d)
  SampleMetrics metrics;
  metrics.cosine = (x_unit * y_unit).sum(1);
  metrics.fve_sample = 1.0 - (x - y).pow(2).sum(1) / (x - mu).pow(2).sum(1);
  metrics.nrmse = (x_unit - y_unit).pow(2).mean(1).sqrt();
  metrics.mse_nrm = ((x_unit - y_unit) * std::sqrt(d)).pow(2).mean(1);
  return metrics;
}

double layer_fve(const at::Tensor& truth, const at::Tensor& prediction) {
  check_pair(truth, prediction);
  auto x = truth.to(at::kDouble), y = prediction.to(at::kDouble);
  auto error_variance = (x - y).var(0, /*unbiased=*/false).sum().item<double>();
  return 1.0 - error_variance / x.var(0, /*unbiased=*/false).sum().item<double>();
}

at::Tensor to_activation_scale(const at::Tensor& ar_output, autoencoder::ArTarget target, double norm) {
  NLA_CHECK(ar_output.dim() == 2, "to_activation_scale: expected (N, d), got ", ar_output.sizes());
  auto y = ar_output.to(at::kDouble);
  if (target == autoencoder::ArTarget::raw) return y;
  NLA_CHECK(std::isfinite(norm) && norm >= 0, "to_activation_scale: norm ", norm);
  return unit_rows(y) * norm;
}

double median_norm(const at::Tensor& rows) {
  NLA_CHECK(rows.dim() == 2 && rows.size(0) > 0, "median_norm: expected (N > 0, d)");
  auto norms = std::get<0>(rows.to(at::kDouble).norm(2, {1}).sort());  // ascending
  const int64_t n = norms.size(0);
  return n % 2 ? norms[n / 2].item<double>() : 0.5 * (norms[n / 2 - 1].item<double>() + norms[n / 2].item<double>());
}

double var_nrm(const at::Tensor& rows) {
  NLA_CHECK(rows.dim() == 2 && rows.size(0) > 1, "var_nrm needs (N > 1, d) rows");
  auto scaled = unit_rows(rows.to(at::kDouble)) * std::sqrt(static_cast<double>(rows.size(1)));
  return scaled.var(0, /*unbiased=*/false).mean().item<double>();
}

at::Tensor recall_at_k(const at::Tensor& truth, const at::Tensor& prediction, const at::Tensor& pool,
                       const at::Tensor& distractors, int64_t k) {
  check_pair(truth, prediction);
  NLA_CHECK(distractors.dim() == 2 && distractors.size(0) == truth.size(0), "distractors must be (N, P)");
  auto y_unit = unit_rows(prediction.to(at::kDouble));                       // (N, d)
  auto own = (unit_rows(truth.to(at::kDouble)) * y_unit).sum(1);            // (N)
  auto candidates = unit_rows(pool.to(at::kDouble)).index_select(0, distractors.flatten())
                        .view({distractors.size(0), distractors.size(1), -1});  // (N, P, d)
  auto scores = (candidates * y_unit.unsqueeze(1)).sum(2);                  // (N, P)
  auto higher = (scores > own.unsqueeze(1)).sum(1);                         // (N)
  return (higher < k).to(at::kDouble);
}

at::Tensor draw_distractors(int64_t first_sample, int64_t n, int64_t pool_size, int64_t per_sample, uint64_t seed) {
  NLA_CHECK(pool_size - 1 >= per_sample, "a pool of ", pool_size, " rows cannot give ", per_sample,
            " distractors besides the sample's own");
  auto out = at::empty({n, per_sample}, at::kLong);
  auto* data = out.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t sample = first_sample + i;
    uint64_t state = seed * 0x9E3779B97F4A7C15ull ^ static_cast<uint64_t>(sample);
    std::unordered_set<int64_t> chosen;
    for (int64_t j = 0; j < per_sample;) {
      int64_t candidate = static_cast<int64_t>(splitmix64_next(state) % static_cast<uint64_t>(pool_size));
      if (candidate == sample || !chosen.insert(candidate).second) continue;  // rejection: distinct, not own
      data[i * per_sample + j++] = candidate;
    }
  }
  return out;
}

// The median (the mean of the middle two for an even count); NaN for none.
double median_of(std::vector<double> values) {
  if (values.empty()) return std::nan("");
  std::sort(values.begin(), values.end());
  size_t mid = values.size() / 2;
  return values.size() % 2 ? values[mid] : 0.5 * (values[mid - 1] + values[mid]);
}

at::Tensor clc_matrix(const at::Tensor& reconstructions) {
  auto r = reconstructions.to(at::kDouble);                     // (L, n, d)
  auto norms = r.norm(2, {2}, /*keepdim=*/true);
  auto unit = r / at::where(norms > 0, norms, at::ones_like(norms));
  // (L, n, d) x (n, d, L) per sample -> mean over samples of the (L, L) cosines
  return at::einsum("isd,jsd->ij", {unit, unit}) / static_cast<double>(r.size(1));  // (L, L)
}

}  // namespace nla::eval
