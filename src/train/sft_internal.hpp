// Private to src/train/: what AR and AV SFT share. sft.cpp checks and reads the inputs
// (SftData); sft_loop.cpp is the training loop over an SftTask; train_ar.cpp and
// train_av.cpp are the two tasks.
#pragma once

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nla/core/stop_signal.hpp"  // defines: StopSignals
#include "nla/dist/adamw.hpp"
#include "nla/dist/communicator.hpp"
#include "nla/dist/fsdp.hpp"
#include "nla/run/fingerprint.hpp"
#include "nla/store/activation_store.hpp"
#include "nla/train/sft.hpp"

namespace nla::train {

// The store, its descriptions and the split, validated (check_sft_inputs: rank 0 checks and
// every rank raises the same error).
struct SftData {
  std::unique_ptr<store::ActivationStore> acts;
  std::vector<std::string> descriptions;
  RowSplit split;
  std::vector<int64_t> eval_rows;
  int layer = 0;
  double var_nrm = 0;
  double var_raw = 0;         // the raw training rows' mean per-dimension variance
  double injection_scale = 0;
  at::Tensor mean_direction;  // (1, d) fp32: the mean of the normalised training rows
  at::Tensor mean_row;        // (1, d) fp32: the mean of the raw training rows
};

// The checked inputs of `command` (train_ar / train_av are given what check_sft_inputs made).
const SftData& checked_data(const SftInputs& inputs, const char* command);

std::string tokenizer_dir(const SftOptions& o);

// The AV's loss aggregation: true for the sequence mean (the authors'), false for the token mean.
bool sequence_mean_aggregation(const std::string& name);

// This rank's contiguous part of `rows` (sizes differ by at most one).
inline std::vector<int64_t> share_of(const std::vector<int64_t>& rows, int rank, int size) {
  const size_t n = rows.size(), base = n / static_cast<size_t>(size), extra = n % static_cast<size_t>(size);
  const size_t r = static_cast<size_t>(rank);
  const size_t begin = r * base + std::min<size_t>(r, extra);
  const size_t count = base + (r < extra ? 1 : 0);
  return {rows.begin() + static_cast<int64_t>(begin), rows.begin() + static_cast<int64_t>(begin + count)};
}

// Validation's chunks of `batch` rows over all ranks: `visit(mine, idle)` gets this rank's
// share of each chunk. A rank without rows in a chunk gets one row with idle = true, to run
// and ignore, so every rank makes the same collective calls.
template <typename Visit>
void for_each_eval_chunk(const std::vector<int64_t>& eval_rows, int64_t batch, const dist::Communicator& comm,
                         Visit&& visit) {
  for (size_t first = 0; first < eval_rows.size(); first += static_cast<size_t>(batch)) {
    const size_t last = std::min(eval_rows.size(), first + static_cast<size_t>(batch));
    std::vector<int64_t> chunk(eval_rows.begin() + static_cast<int64_t>(first),
                               eval_rows.begin() + static_cast<int64_t>(last));
    auto mine = share_of(chunk, comm.rank(), comm.size());
    const bool idle = mine.empty();
    if (idle) mine = {eval_rows.front()};
    visit(mine, idle);
  }
}

// What the SFT loop trains: the AR (train_ar.cpp) or the AV (train_av.cpp).
class SftTask {
 public:
  virtual ~SftTask() = default;
  virtual const char* command() const = 0;  // "train-ar" | "train-av"
  // Settings besides command, seed and batch that a resume must match.
  virtual void add_to_fingerprint(run::Fingerprint& fingerprint) const = 0;
  // The normaliser of a global batch (every rank computes it for all rows).
  virtual double weight(const std::vector<int64_t>& rows) const = 0;
  // Adds the gradient of loss_scale * (summed loss over rows); returns this call's summed
  // loss and weight (AR: rows; AV: answer tokens).
  virtual std::pair<double, double> accumulate(const std::vector<int64_t>& rows, double loss_scale) = 0;
  // Collective validation on the evaluation rows.
  virtual SftEval validate(int64_t step) = 0;
  // The validation's metrics.jsonl fields (besides step, split, loss, n), and its log line.
  virtual nlohmann::json validation_fields(const SftEval& eval) const = 0;
  // Collective: the checkpoint directory.
  virtual void save_checkpoint(const std::string& directory) = 0;
  virtual dist::ShardedModel& sharded() = 0;
  virtual dist::ShardedAdamW& optimizer() = 0;
};

// The SFT loop (sft_loop.cpp): resume, steps, validation, checkpoint at `checkpoint`.
SftResult run_sft(const SftOptions& o, const SftData& data, SftTask& task, const dist::Communicator& comm,
                  const std::string& checkpoint, const StopSignals& stop);

}  // namespace nla::train
