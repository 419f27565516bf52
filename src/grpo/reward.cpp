// GRPO's score phase: the reward ranks' AR reads each successful sample's explanation;
// reward = -(the AR's objective), failed samples keep kFailedReward.
#include <c10/core/GradMode.h>  // c10::NoGradGuard (LibTorch 2.x has no at:: alias here)
#include <ATen/ATen.h>
#include <mpi.h>

#include <algorithm>
#include <cmath>

#include "grpo_run.hpp"
#include "nla/core/error.hpp"
#include "nla/dist/text_collectives.hpp"    // defines: all_gather_text
#include "nla/store/activation_tensor.hpp"  // defines: read_rows_tensor

namespace nla::grpo {

void score(GrpoRun& run, std::vector<Sample>& batch, const store::ActivationStore& store, const std::string& what) {
  const GrpoOptions& o = run.o;
  const int64_t total = static_cast<int64_t>(batch.size());
  nlohmann::json scored = nlohmann::json::array();
  if (run.is_reward) {
    c10::NoGradGuard no_grad;
    const int64_t chunks = (total + o.score_batch - 1) / o.score_batch;
    for (int64_t chunk : my_chunks(chunks, run.layout.index(run.rank, Role::reward), run.layout.size(Role::reward))) {
      std::vector<int64_t> indices, chunk_rows;
      std::vector<std::string> descriptions;
      for (int64_t i = chunk * o.score_batch; i < std::min(total, (chunk + 1) * o.score_batch); ++i) {
        const auto& s = batch[static_cast<size_t>(i)];
        if (s.failed) continue;
        indices.push_back(i);
        chunk_rows.push_back(s.row);
        descriptions.push_back(s.explanation);
      }
      if (indices.empty()) continue;
      const auto& ar = *run.reward_ar;
      auto predicted = ar.forward(ar.make_batch(*run.tokenizer, descriptions, o.ar_max_tokens));      // (b, d)
      auto truth = store::read_rows_tensor(store, run.in.layer, chunk_rows).to(run.device);          // (b, d)
      auto errors = autoencoder::mse_nrm(predicted, truth).to(at::kDouble).cpu();                     // (b)
      auto losses = run.in.objective.per_row(predicted, truth).to(at::kDouble).cpu();                // (b)
      for (size_t q = 0; q < indices.size(); ++q)
        scored.push_back({indices[q], errors[static_cast<int64_t>(q)].item<double>(),
                          losses[static_cast<int64_t>(q)].item<double>()});
    }
  }
  for (const auto& part : dist::all_gather_text(MPI_COMM_WORLD, scored.dump()))
    for (const auto& record : nlohmann::json::parse(part)) {
      auto& s = batch.at(record.at(0).get<size_t>());
      s.mse_nrm = record.at(1).get<double>();
      s.ar_loss = record.at(2).get<double>();
      NLA_CHECK(std::isfinite(s.mse_nrm) && std::isfinite(s.ar_loss), "grpo: ", what,
                ": non-finite AR error for store row ", s.row, " of ", store.path());
      s.reward = -s.ar_loss;
    }
}

}  // namespace nla::grpo
