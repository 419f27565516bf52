// nla bench grpo: one GRPO step split by phase, on random weights and random activations.
//
//   generate  rank 0: --batch activations x K = 4 samples, --new-tokens each (a random AV
//             rarely closes its tag, so nearly every sample runs to the cap): rollout tokens/s
//             beside it, the generator alone on the same model, batch, prompt ids and cap
//             (sampling, no injection, no stop token): the figure a rollout should reach
//   score     rank 0: the AR (first half of the blocks + identity head) on those texts
//   update    rank 0 as a 1-rank trainer: policy and reference log-probs, the GRPO loss
//             backward, AdamW (the step's compute, without sharding traffic)
//   sync      split layout: the trainer root streams the AV to the other ranks in
//             64 MB buckets (WeightStream), beside one plain broadcast of the same
//             bytes as a single buffer on the same communicator: GB/s and their ratio.
//             Needs >= 2 ranks (mpirun -n 2 nla bench grpo); skipped on one.
// Seconds are the mean over --repeats steps after one warm-up step.
#include <c10/core/GradMode.h>  // c10::NoGradGuard (LibTorch 2.x has no at:: alias here)
#include <ATen/ATen.h>

#include <chrono>
#include <cmath>
#include <optional>

#include "bench_model_common.hpp"
#include "nla/core/timing.hpp"  // defines: seconds_since
#include "nla/core/atomic_file.hpp"
#include "nla/core/log.hpp"
#include "nla/dist/adamw.hpp"
#include "nla/grpo/loss.hpp"
#include "nla/grpo/weight_sync.hpp"
#include "nla/model/generate.hpp"
#include "nla/autoencoder/losses.hpp"
#include "nla/autoencoder/verbalizer.hpp"
#include "nla/autoencoder/sharded.hpp"

namespace nla::bench {

namespace {

using Clock = std::chrono::steady_clock;
}  // namespace

BenchReport bench_grpo(const BenchOptions& options) {
  BenchReport report{"grpo", {}};
  auto world = dist::Communicator::world();
  const int rank = world.rank();
  const int64_t k = 4, n = options.batch, samples = n * k;
  auto tokenizer = tokenizer::Tokenizer::from_file(bundled_file(options.tokenizer));
  model::Qwen2Model av = bench_model(options);  // same seed on every rank
  const auto config = av.config();
  const int64_t d = config.hidden_size, layer = config.num_hidden_layers / 2;
  const double injection_scale = 100;
  auto acts = at::randn({n, d}, at::make_generator<at::CPUGeneratorImpl>(7));  // (N, d)
  std::vector<int64_t> ids(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) ids[static_cast<size_t>(i)] = i;

  // The trainer: rank 0 alone (so the sync below is a true split layout).
  auto trainer = world.split(rank == 0 ? 0 : MPI_UNDEFINED, rank);
  std::unique_ptr<autoencoder::ShardedVerbalizer> policy, reference;
  std::unique_ptr<dist::ShardedAdamW> optimizer;
  std::optional<autoencoder::Reconstructor> ar;
  std::unique_ptr<autoencoder::ShardedReconstructor> critic;  // the live AR that GRPO refreshes
  std::unique_ptr<dist::ShardedAdamW> critic_optimizer;
  if (rank == 0) {
    policy = std::make_unique<autoencoder::ShardedVerbalizer>(bench_model(options), trainer);
    reference = std::make_unique<autoencoder::ShardedVerbalizer>(bench_model(options), trainer);
    optimizer = std::make_unique<dist::ShardedAdamW>(policy->sharded());
    model::LoadOptions trunk_options;
    trunk_options.num_layers = layer + 1;
    trunk_options.with_head = false;
    trunk_options.device = av.device();
    trunk_options.dtype = av.dtype();
    // The scoring AR and the live AR that the refresh trains: the same seeded initialisation.
    auto initial_ar = [&] {
      return autoencoder::Reconstructor(model::Qwen2Model::random_init(config, 1, trunk_options),
                                        at::eye(d, at::TensorOptions().dtype(at::kFloat).device(av.device())),
                                        autoencoder::kCriticTemplate);
    };
    ar.emplace(initial_ar());
    critic = std::make_unique<autoencoder::ShardedReconstructor>(initial_ar(), trainer);
    critic_optimizer = std::make_unique<dist::ShardedAdamW>(critic->sharded());
  }
  const int64_t bucket_bytes = int64_t{64} << 20;  // nla grpo's default sync-bucket-mb
  grpo::WeightStream stream;
  if (world.size() > 1) {
    if (rank == 0) stream = grpo::WeightStream::sender(policy->sharded(), world, bucket_bytes);
    else stream = grpo::WeightStream::receiver(av.named_parameters(), world, bucket_bytes);
  }

  const at::Tensor sample_acts = acts.repeat_interleave(k, 0);  // (NK, d): each activation once per sample
  double generate_s = 0, score_s = 0, update_s = 0, refresh_s = 0, sync_s = 0, plain_s = 0, tokens = 0,
         plain_generate_s = 0;
  for (int repeat = 0; repeat <= options.repeats; ++repeat) {
    const bool timed = repeat > 0;  // the first step warms up
    if (rank == 0) {
      auto start = Clock::now();
      autoencoder::Verbalizer verbalizer(av, tokenizer, injection_scale);
      autoencoder::VerbalizeOptions generation;
      generation.max_new_tokens = options.new_tokens;
      generation.temperature = 1.0;
      generation.seed = static_cast<uint64_t>(repeat);
      generation.samples_per_activation = k;
      generation.batch = samples;
      auto rollouts = verbalizer.verbalize(acts, ids, generation);
      if (timed) generate_s += seconds_since(start);
      std::vector<std::vector<int64_t>> answers;
      std::vector<std::string> texts;
      for (const auto& v : rollouts) {
        if (timed) tokens += static_cast<double>(v.tokens.size());
        answers.push_back(v.tokens);
        texts.push_back(v.text);
      }

      // The generator's own figure at the same shape: every sequence runs to the cap.
      start = Clock::now();
      {
        std::vector<model::GenerationPrompt> prompts(static_cast<size_t>(samples));
        const auto& prompt_ids = verbalizer.prompt().ids;
        for (auto& prompt : prompts) prompt.ids.assign(prompt_ids.begin(), prompt_ids.end());
        model::GenerationOptions plain;
        plain.max_new_tokens = options.new_tokens;
        plain.temperature = 1.0;
        plain.seed = static_cast<uint64_t>(repeat);
        model::generate(av, prompts, plain);
      }
      if (timed) plain_generate_s += seconds_since(start);

      start = Clock::now();
      std::vector<double> rewards;
      {
        c10::NoGradGuard no_grad;
        auto predicted = ar->forward(ar->make_batch(tokenizer, texts, 256));                       // (NK, d)
        auto errors = autoencoder::mse_nrm(predicted, sample_acts.to(predicted.device()));  // (NK)
        errors = errors.to(at::kDouble).cpu();
        for (int64_t i = 0; i < samples; ++i) rewards.push_back(-errors[i].item<double>());
      }
      if (timed) score_s += seconds_since(start);

      start = Clock::now();
      auto advantages = grpo::group_advantages(rewards, k);
      auto batch = autoencoder::make_av_batch(verbalizer.prompt(),
                                        sample_acts, answers, injection_scale, av.device(),
                                        policy->sharded().compute_dtype());
      auto old_logprobs = policy->token_logprobs(batch);
      auto ref_logprobs = reference->token_logprobs(batch);
      auto advantage_tensor = at::tensor(advantages, at::kDouble).to(av.device());
      const double token_count = batch.answer_mask.sum().item<double>();
      policy->sharded().zero_grad();
      policy->accumulate_gradients(batch, [&](const at::Tensor& logprobs) {
        auto sums = grpo::grpo_loss_sums(logprobs, old_logprobs, ref_logprobs, advantage_tensor, batch.answer_mask, {});
        return sums.loss / token_count;
      });
      policy->sharded().clip_grad_norm(1.0);
      optimizer->step();
      if (timed) update_s += seconds_since(start);

      // The AR refresh (--ar-refresh-every 1, ar-batch 0): one AR step on every sample's
      // description against its activation.
      start = Clock::now();
      critic->sharded().zero_grad();
      critic->accumulate_gradients(autoencoder::make_ar_batch(tokenizer, texts, 256, critic->critic_template(), av.device()),
                                   sample_acts.to(av.device()), 1.0 / static_cast<double>(samples));
      critic->sharded().clip_grad_norm(1.0);
      critic_optimizer->step();
      if (timed) refresh_s += seconds_since(start);
    }
    if (world.size() > 1) {
      world.barrier();
      auto start = Clock::now();
      if (rank == 0) grpo::WeightStream::send(policy->sharded(), &stream);
      else stream.receive();
      world.barrier();
      if (timed) sync_s += seconds_since(start);
      at::Tensor flat = at::empty({stream.total_numel()}, at::kFloat);
      world.barrier();
      start = Clock::now();
      world.broadcast(flat, 0);
      world.barrier();
      if (timed) plain_s += seconds_since(start);
    }
  }
  const double r = options.repeats;
  const double bytes = static_cast<double>(stream.total_numel()) * 4;
  const double step_s = (generate_s + score_s + update_s + refresh_s + sync_s) / r;
  char note[160];
  std::snprintf(note, sizeof note, "%s, %lld activations x %lld samples, %lld new tokens, %d ranks",
                options.model.empty() ? options.preset.c_str() : options.model.c_str(), static_cast<long long>(n),
                static_cast<long long>(k), static_cast<long long>(options.new_tokens), world.size());
  report.rows.push_back({"seconds per step", step_s, "s", note});
  report.rows.push_back({"generate", generate_s / r, "s", "rank 0, KV-cache sampling"});
  report.rows.push_back({"score", score_s / r, "s", "rank 0, AR forward"});
  report.rows.push_back({"update", update_s / r, "s", "rank 0: 2 log-prob passes, loss backward, AdamW"});
  report.rows.push_back({"AR refresh", refresh_s / r, "s", "rank 0: one AR step on every sample (ar-batch 0)"});
  report.rows.push_back({"sync", sync_s / r, "s", world.size() > 1 ? "bucketed AV broadcast to ranks 1.." : "1 rank: none"});
  const double rollout_tps = generate_s > 0 ? tokens / generate_s : 0;
  const double plain_tps = plain_generate_s > 0 ? r * static_cast<double>(samples * options.new_tokens) / plain_generate_s : 0;
  report.rows.push_back({"rollout tokens/s", rollout_tps, "tok/s", "generated tokens (a closed answer stops early)"});
  report.rows.push_back({"generator tokens/s", plain_tps, "tok/s", "model::generate alone, same batch, prompt and cap"});
  report.rows.push_back({"rollout / generator", plain_tps > 0 ? rollout_tps / plain_tps : 0, "ratio", "goal >= 1"});
  if (world.size() > 1) {
    const double sync_gbs = bytes / (sync_s / r) / 1e9, plain_gbs = bytes / (plain_s / r) / 1e9;
    std::snprintf(note, sizeof note, "%.1f MB in %lld buckets of %lld MB", bytes / 1e6,
                  static_cast<long long>(stream.buckets()), static_cast<long long>(bucket_bytes >> 20));
    report.rows.push_back({"weight sync", sync_gbs, "GB/s", note});
    report.rows.push_back({"plain broadcast", plain_gbs, "GB/s", "one buffer of the same bytes, same communicator"});
    report.rows.push_back({"sync / plain broadcast", sync_gbs / plain_gbs, "ratio", "includes the trainer's unit gathers and packing"});
  }
  return report;
}

}  // namespace nla::bench
