// GRPO's samples: a step's rows, what a set of samples scored, the paired gain over the
// SFT AV, and the AR refresh pairs as trainer_state/ keeps them.
#include <algorithm>
#include <cmath>
#include <random>

#include "grpo_run.hpp"
#include "nla/core/seeding.hpp"

namespace nla::grpo {

std::vector<int64_t> step_rows(int64_t n_rows, int64_t count, int64_t seed, int64_t step) {
  std::mt19937_64 rng(mix_seeds(static_cast<uint64_t>(seed), static_cast<uint64_t>(step) + 1));
  std::vector<int64_t> pool(static_cast<size_t>(n_rows));
  for (int64_t i = 0; i < n_rows; ++i) pool[static_cast<size_t>(i)] = i;
  for (int64_t i = 0; i < count; ++i) {  // partial Fisher-Yates; modulo keeps it portable
    const int64_t j = i + static_cast<int64_t>(rng() % static_cast<uint64_t>(n_rows - i));
    std::swap(pool[static_cast<size_t>(i)], pool[static_cast<size_t>(j)]);
  }
  pool.resize(static_cast<size_t>(count));
  return pool;
}

nlohmann::json SampleStats::to_json(double var_nrm, autoencoder::ArTarget target) const {
  const bool any = samples > failed;
  nlohmann::json out = {{"reward_mean", reward_mean},
                        {"reward_std", reward_std},
                        {"mse_nrm", any ? nlohmann::json(mse_nrm) : nlohmann::json()},
                        {"fve_nrm", any ? nlohmann::json(autoencoder::fve_nrm(mse_nrm, var_nrm)) : nlohmann::json()},
                        {"failure_rate", failure_rate()},
                        {"description_tokens", description_tokens}};
  // A raw AR's reward is -mse / var_raw: its FVE against the training variance is 1 + reward.
  if (target == autoencoder::ArTarget::raw) out["fve"] = any ? nlohmann::json(1.0 - ar_loss) : nlohmann::json();
  return out;
}

SampleStats sample_stats(const std::vector<Sample>& batch) {
  SampleStats stats;
  stats.samples = static_cast<int64_t>(batch.size());
  double reward_sum = 0, mse_sum = 0, loss_sum = 0, tokens = 0;
  for (const auto& s : batch) {
    reward_sum += s.reward;
    tokens += static_cast<double>(s.tokens.size());
    if (s.failed) {
      ++stats.failed;
    } else {
      mse_sum += s.mse_nrm;
      loss_sum += s.ar_loss;
    }
  }
  const double count = static_cast<double>(std::max<int64_t>(stats.samples, 1));
  stats.reward_mean = reward_sum / count;
  double squares = 0;
  for (const auto& s : batch) squares += (s.reward - stats.reward_mean) * (s.reward - stats.reward_mean);
  stats.reward_std = std::sqrt(squares / count);
  if (stats.samples > stats.failed) {
    stats.mse_nrm = mse_sum / static_cast<double>(stats.samples - stats.failed);
    stats.ar_loss = loss_sum / static_cast<double>(stats.samples - stats.failed);
  }
  stats.description_tokens = tokens / count;
  return stats;
}

PairedGain paired_gain(const std::vector<Sample>& policy, const std::vector<Sample>& sft, int64_t k) {
  const size_t activations = policy.size() / static_cast<size_t>(k);
  std::vector<double> differences(activations, 0.0);
  for (size_t i = 0; i < policy.size(); ++i)
    differences[i / static_cast<size_t>(k)] += (policy[i].reward - sft[i].reward) / static_cast<double>(k);
  PairedGain gain;
  for (double d : differences) gain.mean += d / static_cast<double>(activations);
  if (activations > 1) {
    double squares = 0;
    for (double d : differences) squares += (d - gain.mean) * (d - gain.mean);
    gain.standard_error = std::sqrt(squares / static_cast<double>(activations - 1) / static_cast<double>(activations));
  }
  return gain;
}

nlohmann::json pairs_to_json(const std::vector<ArPair>& pairs) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& pair : pairs) out.push_back({pair.row, pair.explanation});
  return out;
}

std::vector<ArPair> pairs_from_json(const nlohmann::json& json) {
  std::vector<ArPair> pairs;
  for (const auto& item : json) pairs.push_back({item.at(0).get<int64_t>(), item.at(1).get<std::string>()});
  return pairs;
}

}  // namespace nla::grpo
