// AV SFT: the full model learns to write each activation's gold description with the
// activation injected at the marker token. Validation also scores the same answers with
// other rows' vectors: the difference is what the vector is worth. The loop is sft_loop.cpp.
#include <ATen/ATen.h>

#include <map>
#include <memory>

#include "nla/autoencoder/checkpoint.hpp"
#include "nla/autoencoder/prompts.hpp"
#include "nla/autoencoder/sharded.hpp"  // defines: ShardedVerbalizer, make_av_batch, nla_adamw
#include "nla/autoencoder/verbalizer.hpp"  // defines: answer_ids
#include "nla/core/log.hpp"
#include "nla/dist/device.hpp"              // defines: resolve_device, resolve_precision
#include "nla/model/qwen2.hpp"
#include "nla/store/activation_tensor.hpp"  // defines: read_rows_tensor
#include "nla/tokenizer/tokenizer.hpp"
#include "sft_internal.hpp"

namespace nla::train {

namespace {

class AvTask final : public SftTask {
 public:
  AvTask(const SftOptions& o, const SftData& data, const dist::Communicator& comm)
      : o_(o),
        data_(data),
        comm_(comm),
        device_(dist::resolve_device(o.device)),
        compute_dtype_(dist::resolve_precision(o.precision, device_.type())),
        sequence_mean_(sequence_mean_aggregation(o.loss_aggregation)) {
    dist::use_deterministic_algorithms(o.deterministic, device_.type());  // before the first cuBLAS call
    auto tokenizer = tokenizer::Tokenizer::from_file(tokenizer_dir(o));
    prompt_ = autoencoder::av_prompt(tokenizer);
    // Every row's answer ids (answer text + <|im_end|>, cut to max_tokens): cheap next to a
    // forward, and every rank needs the token counts of whole global batches.
    answers_.resize(data.descriptions.size());
    for (const auto* rows : {&data.split.train, &data.eval_rows})
      for (int64_t row : *rows) {
        auto& ids = answers_[static_cast<size_t>(row)];
        if (!ids.empty()) continue;
        ids = autoencoder::answer_ids(tokenizer, data.descriptions[static_cast<size_t>(row)]);
        if (static_cast<int64_t>(ids.size()) > o.max_tokens) ids.resize(static_cast<size_t>(o.max_tokens));
      }
    model::LoadOptions load;
    load.device = device_;
    dist::FsdpOptions fsdp;
    fsdp.per_block = o.per_block;
    fsdp.compute_dtype = compute_dtype_;
    av_ = std::make_unique<autoencoder::ShardedVerbalizer>(model::Qwen2Model::load(o.model, load), comm, fsdp);
    if (o.freeze_embeddings) av_->sharded().freeze("embed");
    optimizer_ = std::make_unique<dist::ShardedAdamW>(av_->sharded(), autoencoder::nla_adamw(o.lr_max, o.weight_decay));
    // Validation row i borrows the activation of row i + n/2 (mod n): a derangement for n >= 2
    // that pairs rows far apart in the store (neighbouring rows share a document).
    const auto& eval_rows = data.eval_rows;
    for (size_t i = 0; i < eval_rows.size(); ++i)
      borrowed_vector_[eval_rows[i]] = eval_rows[(i + std::max<size_t>(1, eval_rows.size() / 2)) % eval_rows.size()];
  }

  const char* command() const override { return "train-av"; }
  void add_to_fingerprint(run::Fingerprint&) const override {}
  // The step's loss is divided by its answers (sequence mean) or by its answer tokens.
  double weight(const std::vector<int64_t>& rows) const override {
    return sequence_mean_ ? static_cast<double>(rows.size()) : tokens_of(rows);
  }

  std::pair<double, double> accumulate(const std::vector<int64_t>& rows, double loss_scale) override {
    // (R, 2): each row's NLL (summed, or its token mean) and its tokens
    auto per_row = av_->accumulate_sft_gradients(batch_with_vectors(rows, rows), loss_scale, sequence_mean_);
    return {per_row.select(1, 0).sum().item<double>(), per_row.select(1, 1).sum().item<double>()};
  }

  SftEval validate(int64_t step) override {
    double nll = 0, nll_shuffled = 0;
    const auto& eval_rows = data_.eval_rows;
    for_each_eval_chunk(eval_rows, o_.batch, comm_, [&](const std::vector<int64_t>& mine, bool idle) {
      // One batch of 2R: the rows with their own vectors, then the same answers with borrowed ones.
      const int64_t r = static_cast<int64_t>(mine.size());
      std::vector<int64_t> answer_rows = mine, vector_rows = mine;
      answer_rows.insert(answer_rows.end(), mine.begin(), mine.end());
      for (int64_t row : mine) vector_rows.push_back(borrowed_vector_.at(row));
      auto logprobs = av_->token_logprobs(batch_with_vectors(answer_rows, vector_rows));  // (2R, A)
      if (idle) return;
      nll -= logprobs.narrow(0, 0, r).sum().item<double>();
      nll_shuffled -= logprobs.narrow(0, r, r).sum().item<double>();
    });
    SftEval e;
    e.step = step;
    e.loss = comm_.all_reduce_scalar(nll) / tokens_of(eval_rows);
    e.loss_shuffled = comm_.all_reduce_scalar(nll_shuffled) / tokens_of(eval_rows);
    return e;
  }

  nlohmann::json validation_fields(const SftEval& e) const override {
    log_info("train-av: step %lld | val loss %.4f (token-mean NLL of the answers) | with shuffled vectors %.4f: "
             "the vector is worth %.4f nats/token",
             static_cast<long long>(e.step), e.loss, e.loss_shuffled, e.loss_shuffled - e.loss);
    return {{"loss_shuffled", e.loss_shuffled}, {"vector_gain", e.loss_shuffled - e.loss}};
  }

  void save_checkpoint(const std::string& directory) override {
    auto meta = autoencoder::NlaMeta::defaults("av", data_.acts->hidden_size(), o_.layer, data_.injection_scale);
    meta.var_nrm = data_.var_nrm;
    meta.base_model = o_.model;
    av_->save_checkpoint(meta, directory, tokenizer_dir(o_));
  }

  dist::ShardedModel& sharded() override { return av_->sharded(); }
  dist::ShardedAdamW& optimizer() override { return *optimizer_; }

  void log_start() const {
    log_info("train-av: layer %lld | %zu training rows, %zu validation rows (%zu evaluated) | s %.4g | "
             "%lld parameters over %d ranks (%s compute)",
             static_cast<long long>(o_.layer), data_.split.train.size(), data_.split.validation.size(),
             data_.eval_rows.size(), data_.injection_scale,
             static_cast<long long>(av_->sharded().memory().total_parameters), comm_.size(),
             compute_dtype_ == at::kBFloat16 ? "bf16" : "fp32");
  }

 private:
  // The answers of `rows` with the activations of `vector_rows` (the same rows except in
  // the shuffled-vector validation).
  autoencoder::AvBatch batch_with_vectors(const std::vector<int64_t>& rows, const std::vector<int64_t>& vector_rows) {
    std::vector<std::vector<int64_t>> batch_answers;
    for (int64_t row : rows) batch_answers.push_back(answers_[static_cast<size_t>(row)]);
    auto acts = store::read_rows_tensor(*data_.acts, data_.layer, vector_rows);  // (R, d)
    return autoencoder::make_av_batch(prompt_, acts, batch_answers, data_.injection_scale, device_, compute_dtype_);
  }
  double tokens_of(const std::vector<int64_t>& rows) const {
    double n = 0;
    for (int64_t row : rows) n += static_cast<double>(answers_[static_cast<size_t>(row)].size());
    return n;
  }

  const SftOptions& o_;
  const SftData& data_;
  const dist::Communicator& comm_;
  c10::Device device_;
  at::ScalarType compute_dtype_;
  bool sequence_mean_;
  autoencoder::AvPrompt prompt_;
  std::vector<std::vector<int64_t>> answers_;
  std::unique_ptr<autoencoder::ShardedVerbalizer> av_;
  std::unique_ptr<dist::ShardedAdamW> optimizer_;
  std::map<int64_t, int64_t> borrowed_vector_;
};

}  // namespace

SftResult train_av(const SftOptions& o, const SftInputs& inputs) {
  const StopSignals stop;  // from here a stop signal waits for the next step boundary
  const auto comm = dist::Communicator::world();
  const SftData& data = checked_data(inputs, "train-av");
  AvTask task(o, data, comm);
  task.log_start();
  return run_sft(o, data, task, comm, o.out + "/av", stop);
}

}  // namespace nla::train
