// Bucketed weight broadcasts from the trainer root (see weight_sync.hpp).
#include "nla/grpo/weight_sync.hpp"

#include <ATen/ATen.h>
#include <mpi.h>

#include <map>
#include <nlohmann/json.hpp>

#include "nla/core/error.hpp"

namespace nla::grpo {

namespace {

// Root's JSON text -> every rank of comm.
std::string broadcast_text(const dist::Communicator& comm, std::string text) {
  at::Tensor length = at::full({1}, static_cast<int64_t>(text.size()), at::kLong);
  comm.broadcast(length, 0);
  text.resize(static_cast<size_t>(length.item<int64_t>()));
  at::Tensor bytes = at::from_blob(text.data(), {static_cast<int64_t>(text.size())}, at::kByte);
  if (!text.empty()) comm.broadcast(bytes, 0);
  return text;
}

int64_t bucket_numel_for(int64_t bucket_bytes) {
  NLA_CHECK_INPUT(bucket_bytes >= 1024, "option 'sync-bucket-mb': expected a bucket of at least 1 KiB");
  return bucket_bytes / static_cast<int64_t>(sizeof(float));
}

}  // namespace

WeightStream WeightStream::sender(const dist::ShardedModel& model, dist::Communicator sync, int64_t bucket_bytes) {
  WeightStream stream;
  stream.sync_ = std::move(sync);
  stream.bucket_numel_ = bucket_numel_for(bucket_bytes);
  nlohmann::json order = nlohmann::json::array();
  for (const auto& unit : model.units())
    for (const auto& entry : unit.entries) {
      stream.order_.emplace_back(entry.hf_name, entry.numel);
      stream.total_numel_ += entry.numel;
      order.push_back({entry.hf_name, entry.numel});
    }
  broadcast_text(stream.sync_, order.dump());
  return stream;
}

WeightStream WeightStream::receiver(std::vector<std::pair<std::string, at::Tensor>> destinations,
                                    dist::Communicator sync, int64_t bucket_bytes) {
  WeightStream stream;
  stream.sync_ = std::move(sync);
  stream.bucket_numel_ = bucket_numel_for(bucket_bytes);
  std::map<std::string, at::Tensor> by_name(destinations.begin(), destinations.end());
  auto order = nlohmann::json::parse(broadcast_text(stream.sync_, ""));
  for (const auto& item : order) {
    const auto name = item.at(0).get<std::string>();
    const auto numel = item.at(1).get<int64_t>();
    auto found = by_name.find(name);
    NLA_CHECK_INPUT(found != by_name.end(), "weight sync: the trainer sends parameter '", name,
                    "', which the receiving model lacks (different checkpoints?)");
    NLA_CHECK_INPUT(found->second.numel() == numel && found->second.is_contiguous(), "weight sync: parameter '", name,
                    "' has ", found->second.numel(), " elements here, ", numel, " on the trainer");
    stream.order_.emplace_back(name, numel);
    stream.destinations_.push_back(found->second.view({-1}));
    stream.total_numel_ += numel;
  }
  return stream;
}

void WeightStream::send(dist::ShardedModel& model, WeightStream* stream) {
  const bool root = stream != nullptr && stream->sync_.valid();
  at::Tensor bucket;
  int64_t filled = 0;
  size_t next = 0;  // index in order_, to check that the gathers come in the announced order
  auto flush = [&] {
    at::Tensor part = bucket.narrow(0, 0, filled);
    stream->sync_.broadcast(part, 0);
    filled = 0;
  };
  if (root) bucket = at::empty({std::min(stream->bucket_numel_, std::max<int64_t>(stream->total_numel_, 1))}, at::kFloat);
  model.for_each_full_parameter([&](const std::string& name, const at::Tensor& tensor) {
    if (!root) return;
    NLA_CHECK(next < stream->order_.size() && stream->order_[next].first == name, "weight sync: parameter '", name,
              "' out of the announced order");
    ++next;
    at::Tensor flat = tensor.reshape({-1});
    if (bucket.device() != flat.device()) bucket = bucket.to(flat.device());
    for (int64_t done = 0; done < flat.numel();) {
      const int64_t take = std::min(flat.numel() - done, bucket.numel() - filled);
      bucket.narrow(0, filled, take).copy_(flat.narrow(0, done, take));
      filled += take;
      done += take;
      if (filled == bucket.numel()) flush();
    }
  });
  if (root && filled > 0) flush();
}

void WeightStream::receive() {
  if (destinations_.empty()) return;
  at::Tensor bucket = at::empty({std::min(bucket_numel_, total_numel_)},
                                at::TensorOptions().dtype(at::kFloat).device(destinations_.front().device()));
  size_t tensor = 0;
  int64_t offset = 0;  // within destinations_[tensor]
  for (int64_t sent = 0; sent < total_numel_;) {
    const int64_t count = std::min(bucket.numel(), total_numel_ - sent);
    at::Tensor part = bucket.narrow(0, 0, count);
    sync_.broadcast(part, 0);
    for (int64_t used = 0; used < count;) {
      at::Tensor& destination = destinations_[tensor];
      const int64_t take = std::min(count - used, destination.numel() - offset);
      destination.narrow(0, offset, take).copy_(part.narrow(0, used, take));
      used += take;
      offset += take;
      if (offset == destination.numel()) {
        ++tensor;
        offset = 0;
      }
    }
    sent += count;
  }
}

}  // namespace nla::grpo
