// mse_nrm, var_nrm, fve_nrm and the AV SFT loss.
#include "nla/autoencoder/losses.hpp"

#include <ATen/ATen.h>

#include <cmath>

#include "nla/core/error.hpp"

namespace nla::autoencoder {

at::Tensor normalise_rows(const at::Tensor& x) {
  NLA_CHECK(x.dim() == 2, "expected (N, d), got ", x.dim(), " dims");
  auto f = x.to(at::kFloat);
  double scale = std::sqrt(static_cast<double>(f.size(1)));
  // clamp: an all-zero row stays zero instead of becoming NaN.
  return f * (scale / f.norm(2, {1}, /*keepdim=*/true).clamp_min(1e-12));
}

at::Tensor mse_nrm(const at::Tensor& x, const at::Tensor& y) {
  NLA_CHECK(x.sizes() == y.sizes(), "mse_nrm: shapes differ: ", x.sizes(), " vs ", y.sizes());
  return (normalise_rows(x) - normalise_rows(y)).pow(2).mean({1});  // (N)
}

double var_raw(const at::Tensor& x) {
  NLA_CHECK(x.dim() == 2 && x.size(0) > 1, "var_raw: expected (N > 1, d)");
  return x.to(at::kDouble).var(0, /*unbiased=*/false).mean().item<double>();
}

ArTarget parse_ar_target(const std::string& text, const std::string& where) {
  if (text == "normalized") return ArTarget::normalized;
  if (text == "raw") return ArTarget::raw;
  NLA_INPUT_ERROR(where, ": expected normalized or raw, got '", text, "'");
}

const char* ar_target_name(ArTarget target) { return target == ArTarget::normalized ? "normalized" : "raw"; }

at::Tensor ArObjective::per_row(const at::Tensor& prediction, const at::Tensor& target_rows) const {
  if (target == ArTarget::normalized) return mse_nrm(prediction, target_rows);
  NLA_CHECK(prediction.sizes() == target_rows.sizes(), "ArObjective: shapes differ: ", prediction.sizes(), " vs ",
            target_rows.sizes());
  NLA_CHECK(var_raw > 0, "ArObjective: var_raw must be > 0, got ", var_raw);
  return (prediction.to(at::kFloat) - target_rows.to(at::kFloat)).pow(2).mean({1}) / var_raw;  // (N)
}

double var_nrm(const at::Tensor& x) {
  NLA_CHECK(x.dim() == 2 && x.size(0) > 1, "var_nrm: expected (N > 1, d)");
  return normalise_rows(x).var(0, /*unbiased=*/false).mean().item<double>();
}

at::Tensor av_sft_loss(const at::Tensor& logits, const at::Tensor& input_ids, const at::Tensor& answer_mask) {
  NLA_CHECK(logits.dim() == 3 && input_ids.sizes() == answer_mask.sizes(), "av_sft_loss: bad shapes");
  int64_t T = logits.size(1);
  // Position t predicts token t + 1.
  auto predicted = logits.slice(1, 0, T - 1).to(at::kFloat);        // (B, T-1, V)
  auto targets = input_ids.slice(1, 1, T);                            // (B, T-1)
  auto mask = answer_mask.slice(1, 1, T).to(at::kFloat);             // (B, T-1)
  auto nll = -at::log_softmax(predicted, -1).gather(2, targets.unsqueeze(2)).squeeze(2);  // (B, T-1)
  auto count = mask.sum();
  NLA_CHECK(count.item<double>() > 0, "av_sft_loss: no answer tokens in the batch");
  return (nll * mask).sum() / count;
}

}  // namespace nla::autoencoder
