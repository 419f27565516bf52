// GRPO's update phase on the trainer ranks: the AV's clipped-ratio + KL step on the step's
// samples, then (every ar_refresh_every steps) the AR's refresh on the policy's pairs.
#include <ATen/ATen.h>

#include <algorithm>

#include "grpo_run.hpp"
#include "nla/store/activation_tensor.hpp"  // defines: read_rows_tensor

namespace nla::grpo {

namespace {

// One micro-batch of the AV update: its inputs, and the log-probs and advantages that stay
// fixed over the PPO epochs.
struct AvMicroBatch {
  autoencoder::AvBatch batch;
  at::Tensor old_logprobs, ref_logprobs, advantages;  // (B, A), (B, A), (B)
};

// This trainer rank's block of the step's samples in micro-batches of at most train_batch
// rows; every trainer rank runs the same number, each with >= 1 row.
std::vector<AvMicroBatch> av_micro_batches(GrpoRun& run, const std::vector<Sample>& batch,
                                           const std::vector<double>& advantages) {
  const GrpoOptions& o = run.o;
  const int64_t samples = static_cast<int64_t>(batch.size());
  const int trainers = run.layout.size(Role::trainer), index = run.layout.index(run.rank, Role::trainer);
  const auto [begin, end] = my_block(samples, index, trainers);
  const int64_t largest = (samples + trainers - 1) / trainers, smallest = samples / trainers;
  const int64_t micro_batches = std::min((largest + o.train_batch - 1) / o.train_batch, smallest);
  std::vector<AvMicroBatch> micros;
  for (int64_t m = 0; m < micro_batches; ++m) {
    const auto [first, last] = my_block(end - begin, static_cast<int>(m), static_cast<int>(micro_batches));
    std::vector<int64_t> micro_rows;
    std::vector<std::vector<int64_t>> answers;
    std::vector<double> micro_advantages;
    for (int64_t i = begin + first; i < begin + last; ++i) {
      micro_rows.push_back(batch[static_cast<size_t>(i)].row);
      answers.push_back(batch[static_cast<size_t>(i)].tokens);
      micro_advantages.push_back(advantages[static_cast<size_t>(i)]);
    }
    AvMicroBatch micro;
    micro.batch = autoencoder::make_av_batch(run.prompt, store::read_rows_tensor(*run.acts, run.in.layer, micro_rows),
                                             answers, run.in.av_meta.injection_scale, run.device,
                                             run.policy->sharded().compute_dtype());
    micro.batch.temperature = o.temperature;  // the ratio and the KL of the distribution sampled
    micro.old_logprobs = run.policy->token_logprobs(micro.batch);
    micro.ref_logprobs = run.reference->token_logprobs(micro.batch);
    micro.advantages = at::tensor(micro_advantages, at::kDouble).to(run.device);
    micros.push_back(std::move(micro));
  }
  return micros;
}

}  // namespace

UpdateSums update_av(GrpoRun& run, const std::vector<Sample>& batch) {
  const GrpoOptions& o = run.o;
  UpdateSums sums;
  std::vector<double> rewards;
  for (const auto& s : batch) rewards.push_back(s.reward);
  AdvantageOptions advantage_options;
  advantage_options.scale_by_std = o.advantage_std;
  const auto advantages = group_advantages(rewards, run.k, advantage_options);
  double sequences = 0;
  for (const auto& s : batch) {
    sums.tokens += static_cast<double>(s.tokens.size());
    sequences += s.tokens.empty() ? 0.0 : 1.0;
  }
  if (!run.is_trainer) return sums;
  // The AV's loss is divided by the step's samples (sequence mean) or tokens (token mean).
  const double loss_divisor = loss_units(run.loss_options.aggregation, sums.tokens, sequences);
  auto micros = av_micro_batches(run, batch, advantages);
  at::Tensor update_sums = at::zeros({3}, at::kDouble);  // loss, kl (epoch 0), clipped
  for (int64_t epoch = 0; epoch < o.ppo_epochs; ++epoch) {
    run.policy->sharded().zero_grad();
    for (auto& micro : micros) {
      run.policy->accumulate_gradients(micro.batch, [&](const at::Tensor& logprobs) {
        auto loss = grpo_loss_sums(logprobs, micro.old_logprobs, micro.ref_logprobs, micro.advantages,
                                   micro.batch.answer_mask, run.loss_options);
        update_sums[0] += loss.loss.item<double>() / loss_divisor;
        if (epoch == 0) update_sums[1] += loss.kl;
        update_sums[2] += loss.clipped;
        return loss.loss / loss_divisor;  // the mean over the global batch's samples or tokens
      });
    }
    sums.grad_norm =
        o.grad_clip > 0 ? run.policy->sharded().clip_grad_norm(o.grad_clip) : run.policy->sharded().grad_norm();
    run.av_optimizer->step(o.lr);
  }
  run.groups.trainer.all_reduce(update_sums);
  sums.loss = update_sums[0].item<double>();
  sums.kl = update_sums[1].item<double>();
  sums.clipped = update_sums[2].item<double>();
  return sums;
}

bool refresh_ar(GrpoRun& run, const std::vector<Sample>& batch, int64_t step, UpdateSums& sums) {
  const GrpoOptions& o = run.o;
  auto& buffer = run.ar_buffer;
  for (const auto& s : batch)
    if (!s.failed) buffer.push_back({s.row, s.explanation});
  if (buffer.size() > run.ar_buffer_capacity)
    buffer.erase(buffer.begin(), buffer.end() - static_cast<int64_t>(run.ar_buffer_capacity));
  const int trainers = run.layout.size(Role::trainer);
  const bool refresh = o.ar_refresh_every > 0 && (step + 1) % o.ar_refresh_every == 0 &&
                       buffer.size() >= static_cast<size_t>(trainers);
  if (!refresh) return false;
  if (run.is_trainer) {
    // Refresh step r trains on global batch r of the pairs, newest first: every pair with
    // ar-batch 0 (the authors'), else the freshest ar-batch. Each trainer rank takes its
    // block in micro-batches of at most ar-micro-batch rows, the same count on every rank
    // (each a collective with >= 1 row), gradients accumulated into one AR step.
    const int index = run.layout.index(run.rank, Role::trainer);
    const int64_t pool = static_cast<int64_t>(buffer.size());
    const int64_t global = o.ar_batch == 0 ? pool : std::min(o.ar_batch, pool);
    const int64_t largest = (global + trainers - 1) / trainers, smallest = global / trainers;
    const int64_t ar_micros = std::min((largest + o.ar_micro_batch - 1) / o.ar_micro_batch, smallest);
    at::Tensor ar_sums = at::zeros({2}, at::kDouble);  // the objective summed over rows, rows
    auto& critic = *run.critic;
    for (int64_t r = 0; r < o.ar_refresh_steps; ++r) {
      const auto [first, last] = my_block(global, index, trainers);
      critic.sharded().zero_grad();
      for (int64_t m = 0; m < ar_micros; ++m) {
        const auto [micro_first, micro_last] = my_block(last - first, static_cast<int>(m), static_cast<int>(ar_micros));
        std::vector<int64_t> pair_rows;
        std::vector<std::string> explanations;
        for (int64_t q = first + micro_first; q < first + micro_last; ++q) {
          const auto& pair = buffer[static_cast<size_t>(pool - 1 - (r * global + q) % pool)];
          pair_rows.push_back(pair.row);
          explanations.push_back(pair.explanation);
        }
        auto errors = critic.accumulate_gradients(
            autoencoder::make_ar_batch(*run.tokenizer, explanations, o.ar_max_tokens, critic.critic_template(),
                                       run.device),
            store::read_rows_tensor(*run.acts, run.in.layer, pair_rows).to(run.device),
            1.0 / static_cast<double>(global));
        ar_sums[0] += errors.to(at::kDouble).sum().item<double>();
        ar_sums[1] += static_cast<double>(pair_rows.size());
      }
      if (o.grad_clip > 0) critic.sharded().clip_grad_norm(o.grad_clip);
      run.ar_optimizer->step(o.ar_lr);
    }
    run.groups.trainer.all_reduce(ar_sums);
    sums.ar_error_sum = ar_sums[0].item<double>();
    sums.ar_rows = ar_sums[1].item<double>();
  }
  buffer.clear();
  return true;
}

}  // namespace nla::grpo
