// AR SFT: the truncated model + value head learns to rebuild each activation from its gold
// explanation, on normalised directions (mse_nrm, the authors') or raw activations
// (MSE / var_raw, the reproduction's). The loop is sft_loop.cpp.
#include <ATen/ATen.h>

#include <memory>

#include "nla/autoencoder/checkpoint.hpp"
#include "nla/autoencoder/losses.hpp"
#include "nla/autoencoder/reconstructor.hpp"
#include "nla/autoencoder/sharded.hpp"  // defines: ShardedReconstructor, nla_adamw
#include "nla/autoencoder/verbalizer.hpp"  // defines: explanation_text
#include "nla/core/log.hpp"
#include "nla/dist/device.hpp"              // defines: resolve_device, resolve_precision
#include "nla/store/activation_tensor.hpp"  // defines: read_rows_tensor
#include "nla/tokenizer/tokenizer.hpp"
#include "sft_internal.hpp"

namespace nla::train {

namespace {

class ArTask final : public SftTask {
 public:
  ArTask(const SftOptions& o, const SftData& data, const dist::Communicator& comm)
      : o_(o),
        data_(data),
        comm_(comm),
        device_(dist::resolve_device(o.device)),
        compute_dtype_(dist::resolve_precision(o.precision, device_.type())) {
    dist::use_deterministic_algorithms(o.deterministic, device_.type());  // before the first cuBLAS call
    tokenizer_ = std::make_unique<tokenizer::Tokenizer>(tokenizer::Tokenizer::from_file(tokenizer_dir(o)));
    model::LoadOptions load;
    load.device = device_;
    dist::FsdpOptions fsdp;
    fsdp.per_block = o.per_block;
    fsdp.compute_dtype = compute_dtype_;
    objective_.target = autoencoder::parse_ar_target(o.ar_target, "option 'ar-target'");
    objective_.var_raw = data.var_raw;
    ar_ = std::make_unique<autoencoder::ShardedReconstructor>(
        autoencoder::Reconstructor::from_base(o.model, o.layer, load), comm, fsdp, objective_);
    optimizer_ = std::make_unique<dist::ShardedAdamW>(ar_->sharded(), autoencoder::nla_adamw(o.lr_max, o.weight_decay));
    mean_direction_ = data.mean_direction.to(device_);
    mean_row_ = data.mean_row.to(device_);
  }

  const char* command() const override { return "train-ar"; }
  void add_to_fingerprint(run::Fingerprint& fingerprint) const override {
    fingerprint.set_since("ar_target", o_.ar_target, "normalized", run::Fingerprint::Record::always);
  }
  double weight(const std::vector<int64_t>& rows) const override { return static_cast<double>(rows.size()); }

  std::pair<double, double> accumulate(const std::vector<int64_t>& rows, double loss_scale) override {
    auto target = store::read_rows_tensor(*data_.acts, data_.layer, rows).to(device_);  // (R, d)
    auto per_row = ar_->accumulate_gradients(batch_of(rows), target, loss_scale);     // (R)
    return {per_row.sum().item<double>(), static_cast<double>(rows.size())};
  }

  SftEval validate(int64_t step) override {
    double sum = 0, nrm_sum = 0, baseline_nrm_sum = 0, baseline_sum = 0;
    const auto& eval_rows = data_.eval_rows;
    for_each_eval_chunk(eval_rows, o_.batch, comm_, [&](const std::vector<int64_t>& mine, bool idle) {
      auto target = store::read_rows_tensor(*data_.acts, data_.layer, mine).to(device_);  // (R, d)
      auto predicted = ar_->predict(batch_of(mine));                                     // (R, d)
      if (idle) return;
      sum += objective_.per_row(predicted, target).sum().item<double>();
      nrm_sum += autoencoder::mse_nrm(predicted, target).sum().item<double>();
      baseline_nrm_sum += autoencoder::mse_nrm(mean_direction_.expand_as(target), target).sum().item<double>();
      if (objective_.target == autoencoder::ArTarget::raw)
        baseline_sum += objective_.per_row(mean_row_.expand_as(target), target).sum().item<double>();
    });
    const double n = static_cast<double>(eval_rows.size());
    SftEval e;
    e.step = step;
    e.loss = comm_.all_reduce_scalar(sum) / n;
    e.mse_nrm = comm_.all_reduce_scalar(nrm_sum) / n;
    e.baseline_mse_nrm = comm_.all_reduce_scalar(baseline_nrm_sum) / n;
    e.fve_nrm = autoencoder::fve_nrm(e.mse_nrm, data_.var_nrm);
    e.baseline_fve_nrm = autoencoder::fve_nrm(e.baseline_mse_nrm, data_.var_nrm);
    if (objective_.target == autoencoder::ArTarget::raw) {
      e.fve = 1.0 - e.loss;  // the loss is mse / var_raw
      e.baseline_fve = 1.0 - comm_.all_reduce_scalar(baseline_sum) / n;
    }
    return e;
  }

  nlohmann::json validation_fields(const SftEval& e) const override {
    nlohmann::json fields = {{"mse_nrm", e.mse_nrm},
                             {"fve_nrm", e.fve_nrm},
                             {"baseline_mse_nrm", e.baseline_mse_nrm},
                             {"baseline_fve_nrm", e.baseline_fve_nrm}};
    if (objective_.target == autoencoder::ArTarget::raw) {
      fields["fve"] = e.fve;
      fields["baseline_fve"] = e.baseline_fve;
      fields["mse"] = e.loss * data_.var_raw;
      log_info("train-ar: step %lld | val mse %.4g | fve %.4f (mean baseline 0) | fve_nrm %.4f (mean direction %.4f)",
               static_cast<long long>(e.step), e.loss * data_.var_raw, e.fve, e.fve_nrm, e.baseline_fve_nrm);
    } else {
      log_info("train-ar: step %lld | val mse_nrm %.4f | fve_nrm %.4f | mean baseline mse_nrm %.4f fve_nrm %.4f",
               static_cast<long long>(e.step), e.loss, e.fve_nrm, e.baseline_mse_nrm, e.baseline_fve_nrm);
    }
    return fields;
  }

  void save_checkpoint(const std::string& directory) override {
    auto meta = autoencoder::NlaMeta::defaults("ar", ar_->d_model(), o_.layer, data_.injection_scale);
    meta.var_nrm = data_.var_nrm;
    meta.var_raw = data_.var_raw;
    meta.ar_target = objective_.target;
    meta.base_model = o_.model;
    ar_->save_checkpoint(meta, directory, tokenizer_dir(o_));
  }

  dist::ShardedModel& sharded() override { return ar_->sharded(); }
  dist::ShardedAdamW& optimizer() override { return *optimizer_; }

  void log_start() const {
    const auto& memory = ar_->sharded().memory();
    log_info("train-ar: layer %lld | target %s (loss %s) | %zu training rows, %zu validation rows (%zu evaluated) | "
             "var_nrm %.4f var_raw %.4g | s %.4g | %lld parameters over %d ranks (%s compute)",
             static_cast<long long>(o_.layer), o_.ar_target.c_str(), objective_.name(), data_.split.train.size(),
             data_.split.validation.size(), data_.eval_rows.size(), data_.var_nrm, data_.var_raw, data_.injection_scale,
             static_cast<long long>(memory.total_parameters), comm_.size(),
             compute_dtype_ == at::kBFloat16 ? "bf16" : "fp32");
  }

 private:
  // Gold descriptions are stored as answers (tags kept, what the AV learns to write); the
  // AR reads the bare explanation, as it will in GRPO and eval.
  autoencoder::ArBatch batch_of(const std::vector<int64_t>& rows) const {
    std::vector<std::string> explanations;
    for (int64_t row : rows)
      explanations.push_back(autoencoder::explanation_text(data_.descriptions[static_cast<size_t>(row)]));
    return autoencoder::make_ar_batch(*tokenizer_, explanations, o_.max_tokens, ar_->critic_template(), device_);
  }

  const SftOptions& o_;
  const SftData& data_;
  const dist::Communicator& comm_;
  c10::Device device_;
  at::ScalarType compute_dtype_;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
  autoencoder::ArObjective objective_;
  std::unique_ptr<autoencoder::ShardedReconstructor> ar_;
  std::unique_ptr<dist::ShardedAdamW> optimizer_;
  at::Tensor mean_direction_, mean_row_;  // (1, d): the baselines of validation
};

}  // namespace

SftResult train_ar(const SftOptions& o, const SftInputs& inputs) {
  const StopSignals stop;  // from here a stop signal waits for the next step boundary
  const auto comm = dist::Communicator::world();
  const SftData& data = checked_data(inputs, "train-ar");
  ArTask task(o, data, comm);
  task.log_start();
  return run_sft(o, data, task, comm, o.out + "/ar", stop);
}

}  // namespace nla::train
