// Trainer -> rollout (AV) and trainer -> reward (AR) weights after an update, in split
// layout: the trainer group gathers its shards unit by unit (dist::ShardedModel::
// for_each_full_parameter) and the trainer root streams the parameters, in that order,
// through fixed-size flat buckets broadcast over a communicator that holds the root
// (rank 0) and the receiving group. The parameters form one stream (a tensor may straddle
// two buckets), so there is one broadcast per bucket and no per-tensor round trip; the
// parameter list itself is exchanged once, when the WeightStream is made.
//
// Colocate layout needs none of this: every rank is a trainer and gathers the sharded
// model itself (on CPU a gathered copy is the "no copy" path; on GPUs colocated rollout
// would read the gathered units in place).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "nla/dist/communicator.hpp"
#include "nla/dist/fsdp.hpp"

namespace nla::grpo {

class WeightStream {
 public:
  // Sender (trainer root; rank 0 of `sync`): its model's parameter order. Collective over sync.
  static WeightStream sender(const dist::ShardedModel& model, dist::Communicator sync, int64_t bucket_bytes);
  // Receiver: tensors updated in place, matched by name against the sender's order (each
  // sender parameter must be here with the same element count; InputError naming it
  // otherwise). Collective over sync.
  static WeightStream receiver(std::vector<std::pair<std::string, at::Tensor>> destinations, dist::Communicator sync,
                               int64_t bucket_bytes);

  // Sender side: collective over the model's (trainer) group AND, on the trainer root,
  // over sync. Trainer ranks other than the root call it with an invalid stream
  // (WeightStream{}), so they take part in the gathers only.
  static void send(dist::ShardedModel& model, WeightStream* stream);
  // Receiver side: collective over sync.
  void receive();

  int64_t total_numel() const { return total_numel_; }
  int64_t bucket_numel() const { return bucket_numel_; }
  int64_t buckets() const { return bucket_numel_ ? (total_numel_ + bucket_numel_ - 1) / bucket_numel_ : 0; }

 private:
  dist::Communicator sync_;
  std::vector<std::pair<std::string, int64_t>> order_;  // (name, numel) in stream order
  std::vector<at::Tensor> destinations_;                // receiver: flat views, stream order
  int64_t total_numel_ = 0;
  int64_t bucket_numel_ = 0;
};

}  // namespace nla::grpo
