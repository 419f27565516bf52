// GRPO's sync phase: the trainers' weights to the models that generate and score. Colocate:
// every rank gathers the sharded model (a collective over the trainer group = the world);
// split: trainer rank 0 streams buckets to the rollout / reward group (weight_sync.hpp).
#include "grpo_run.hpp"

namespace nla::grpo {

void sync_av(GrpoRun& run) {
  if (run.layout.colocate) {
    run.rollout_av = run.policy->gather();
    return;
  }
  if (run.is_trainer) WeightStream::send(run.policy->sharded(), run.rank == 0 ? &run.av_stream : nullptr);
  if (run.is_rollout) run.av_stream.receive();
}

void sync_ar(GrpoRun& run) {
  if (run.layout.colocate) {
    run.reward_ar = run.critic->gather();
    return;
  }
  if (run.is_trainer) WeightStream::send(run.critic->sharded(), run.rank == 0 ? &run.ar_stream : nullptr);
  if (run.is_reward) run.ar_stream.receive();
}

}  // namespace nla::grpo
