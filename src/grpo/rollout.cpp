// GRPO's generate phase: the rollout ranks sample K answers per activation; every rank
// receives all of them in the step's order.
#include <ATen/ATen.h>
#include <mpi.h>

#include <algorithm>

#include "grpo_run.hpp"
#include "nla/autoencoder/verbalizer.hpp"
#include "nla/core/error.hpp"
#include "nla/dist/text_collectives.hpp"    // defines: all_gather_text
#include "nla/store/activation_tensor.hpp"  // defines: read_rows_tensor

namespace nla::grpo {

std::vector<Sample> generate(GrpoRun& run, const model::Qwen2Model* av, const store::ActivationStore& store,
                             const std::vector<int64_t>& rows, uint64_t seed, const std::string& what,
                             int64_t* generated_tokens) {
  const GrpoOptions& o = run.o;
  const int64_t k = run.k, count = static_cast<int64_t>(rows.size()), total = count * k;
  nlohmann::json mine = nlohmann::json::array();
  if (run.is_rollout) {
    // The failure rule sizes AR inputs with the critic template of the AR that scores them.
    autoencoder::Verbalizer verbalizer(*av, *run.tokenizer, run.in.av_meta.injection_scale,
                                       run.in.av_meta.actor_template, run.in.ar_meta.critic_template);
    autoencoder::VerbalizeOptions generation;
    generation.max_new_tokens = o.max_new_tokens;
    generation.temperature = o.temperature;
    generation.top_p = o.top_p;
    generation.seed = seed;
    generation.samples_per_activation = k;
    generation.batch = o.rollout_batch * k;
    // This rank's chunks of rows in one call: rollout_batch * K sequences decode at once and a
    // finished one takes the next waiting sample (continuous batching).
    const int64_t chunks = (count + o.rollout_batch - 1) / o.rollout_batch;
    std::vector<int64_t> my_rows, my_flat;  // store rows, and each row's first index in the step's order
    for (int64_t chunk : my_chunks(chunks, run.layout.index(run.rank, Role::rollout), run.layout.size(Role::rollout)))
      for (int64_t i = chunk * o.rollout_batch; i < std::min(count, (chunk + 1) * o.rollout_batch); ++i) {
        my_rows.push_back(rows[static_cast<size_t>(i)]);
        my_flat.push_back(i * k);
      }
    if (!my_rows.empty()) {
      auto result = verbalizer.verbalize(store::read_rows_tensor(store, run.in.layer, my_rows), my_rows, generation);
      for (size_t f = 0; f < result.size(); ++f)
        mine.push_back({my_flat[f / static_cast<size_t>(k)] + static_cast<int64_t>(f % static_cast<size_t>(k)),
                        result[f].tokens, result[f].explanation, result[f].failed});
    }
  }
  std::vector<Sample> batch(static_cast<size_t>(total));
  int64_t received = 0;
  const std::string text = mine.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  for (const auto& part : dist::all_gather_text(MPI_COMM_WORLD, text)) {
    for (const auto& record : nlohmann::json::parse(part)) {
      auto& s = batch.at(record.at(0).get<size_t>());
      s.tokens = record.at(1).get<std::vector<int64_t>>();
      s.explanation = record.at(2).get<std::string>();
      s.failed = record.at(3).get<bool>();
      if (generated_tokens) *generated_tokens += static_cast<int64_t>(s.tokens.size());
      ++received;
    }
  }
  NLA_CHECK(received == total, "grpo: ", what, ": ", received, " rollouts gathered, expected ", total);
  for (int64_t i = 0; i < total; ++i) batch[static_cast<size_t>(i)].row = rows[static_cast<size_t>(i / k)];
  return batch;
}

}  // namespace nla::grpo
