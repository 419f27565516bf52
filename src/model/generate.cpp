// Batched KV-cache generation: one prefill over the padded prompts, then one token per
// step for every sequence, until each has stopped or reached max_new_tokens.
#include "nla/model/generate.hpp"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <string>

#include "nla/core/error.hpp"
#include "nla/model/cuda_graph.hpp"

namespace nla::model {

namespace {

// The inverse CDF of each row of probs (B, V) float32 on the CPU: the first index whose
// running float64 sum exceeds u * total, total the row's float64 sum. The same arithmetic
// as a float64 cumsum + searchsorted(right) (a sequential sum per row), without writing the
// (B, V) float64 cumsum. A row's sum is one chain of dependent adds, so kRowsAtOnce rows
// advance together: their chains overlap in the core while each keeps its own order.
constexpr int64_t kRowsAtOnce = 8;

// One group of rows (count <= kRowsAtOnce; the slots past `count` repeat row 0 and their
// results are dropped, so the loops have a fixed trip count and the sums stay in registers).
// index[r] and total[r] for r < count; a row whose total is not finite and positive keeps
// index v - 1 (the caller reports it).
void inverse_cdf_group(const float* const* rows, int64_t count, int64_t v, const double* uniforms, int64_t* index,
                       double* totals) {
  double total[kRowsAtOnce] = {};
  for (int64_t j = 0; j < v; ++j)
#pragma GCC unroll 8
    for (int64_t r = 0; r < kRowsAtOnce; ++r) total[r] += static_cast<double>(rows[r][j]);
  double draw[kRowsAtOnce] = {}, running[kRowsAtOnce] = {};
  bool open[kRowsAtOnce] = {};
  int64_t still_open = 0;
  for (int64_t r = 0; r < count; ++r) {
    totals[r] = total[r];
    open[r] = std::isfinite(total[r]) && total[r] > 0;
    draw[r] = uniforms[r] * total[r];
    still_open += open[r] ? 1 : 0;
  }
  for (int64_t j = 0; j < v && still_open > 0; ++j)
#pragma GCC unroll 8
    for (int64_t r = 0; r < kRowsAtOnce; ++r) {
      running[r] += static_cast<double>(rows[r][j]);  // a closed row's sum is not read again
      if (open[r] && running[r] > draw[r]) {
        index[r] = j;
        open[r] = false;
        --still_open;
      }
    }
}

std::vector<int64_t> inverse_cdf_cpu(const at::Tensor& probs, const std::vector<double>& uniforms) {
  const int64_t b = probs.size(0), v = probs.size(1);
  at::Tensor rows = probs.contiguous();
  const float* data = rows.data_ptr<float>();
  std::vector<int64_t> index(static_cast<size_t>(b), v - 1);
  std::vector<double> totals(static_cast<size_t>(b), 0.0);
  const int64_t groups = (b + kRowsAtOnce - 1) / kRowsAtOnce;
  at::parallel_for(0, groups, 1, [&](int64_t group_begin, int64_t group_end) {
    for (int64_t group = group_begin; group < group_end; ++group) {
      const int64_t first = group * kRowsAtOnce, count = std::min(kRowsAtOnce, b - first);
      const float* group_rows[kRowsAtOnce];
      for (int64_t r = 0; r < kRowsAtOnce; ++r) group_rows[r] = data + (first + (r < count ? r : 0)) * v;
      inverse_cdf_group(group_rows, count, v, uniforms.data() + first, index.data() + first, totals.data() + first);
    }
  });
  for (int64_t i = 0; i < b; ++i) {
    const double total = totals[static_cast<size_t>(i)];
    NLA_CHECK(std::isfinite(total) && total > 0, "sampling: probabilities of row ", i, " sum to ", total);
  }
  return index;
}

// The same on the probabilities' device (CUDA): a float64 cumsum and a batched binary
// search there; only the B uniforms go to the device and the B indices come back.
// Opt-in (on_device; NLA_DEVICE_SAMPLING=1) until a GPU run has compared it with the host path: the
// device's parallel scan rounds differently, so a draw at a bin's edge may pick its neighbour.
std::vector<int64_t> inverse_cdf_on_device(const at::Tensor& probs, const std::vector<double>& uniforms) {
  const int64_t b = probs.size(0), v = probs.size(1);
  at::Tensor cdf = probs.to(at::kDouble).cumsum(-1);          // (B, V)
  at::Tensor totals = cdf.select(1, v - 1).to(at::kCPU);      // (B)
  for (int64_t i = 0; i < b; ++i) {
    const double total = totals[i].item<double>();
    NLA_CHECK(std::isfinite(total) && total > 0, "sampling: probabilities of row ", i, " sum to ", total);
  }
  at::Tensor draws = (at::tensor(uniforms, at::kDouble) * totals).unsqueeze(1).to(probs.device());  // (B, 1)
  at::Tensor index = at::searchsorted(cdf, draws, /*out_int32=*/false, /*right=*/true).clamp_max(v - 1);  // (B, 1)
  index = index.squeeze(1).to(at::kCPU);
  return std::vector<int64_t>(index.data_ptr<int64_t>(), index.data_ptr<int64_t>() + b);
}

}  // namespace

bool device_sampling_from_environment() {
  const char* value = std::getenv("NLA_DEVICE_SAMPLING");
  return value != nullptr && std::string(value) == "1";
}

bool cuda_graphs_from_environment() {
  const char* value = std::getenv("NLA_CUDA_GRAPHS");
  return value != nullptr && std::string(value) == "1";
}

std::vector<int64_t> sample_tokens(const at::Tensor& logits, double temperature, double top_p,
                                   const std::vector<at::Generator*>& generators, bool on_device) {
  const int64_t b = logits.size(0);
  NLA_CHECK(static_cast<int64_t>(generators.size()) == b, "sample_tokens: one generator per row");
  if (temperature <= 0) {  // greedy on the device: only B ids travel to the host
    at::Tensor best = logits.argmax(-1).to(at::kCPU);
    return std::vector<int64_t>(best.data_ptr<int64_t>(), best.data_ptr<int64_t>() + b);
  }
  // The whole batch at once on the logits' device: softmax, optional top-p cut, then one
  // uniform number per row from that row's generator and the inverse CDF. (Per-row
  // at::multinomial on a 152k vocabulary cost ~30 ms a row here.)
  // (x / 1 == x exactly: at temperature 1 the division, a (B, V) pass, is skipped.)
  // Off the CPU, the logits come to the host first unless on_device.
  const at::Tensor source = logits.is_cpu() || on_device ? logits : logits.to(at::kCPU);
  at::Tensor scaled = temperature == 1.0 ? source.to(at::kFloat) : source.to(at::kFloat) / temperature;
  at::Tensor probs = at::softmax(scaled, -1);  // (B, V)
  at::Tensor order;
  if (top_p < 1.0) {
    auto [sorted, sorted_order] = probs.sort(-1, true);  // descending
    // Keep a token while the mass before it is below top_p (so at least the top one).
    probs = sorted * ((sorted.cumsum(-1) - sorted) < top_p);
    order = sorted_order;
  }
  std::vector<double> uniforms(static_cast<size_t>(b));
  for (int64_t i = 0; i < b; ++i)
    uniforms[static_cast<size_t>(i)] =
        at::rand({1}, *generators[static_cast<size_t>(i)], at::TensorOptions().dtype(at::kDouble)).item<double>();
  std::vector<int64_t> index = probs.is_cpu() ? inverse_cdf_cpu(probs, uniforms) : inverse_cdf_on_device(probs, uniforms);
  if (order.defined()) {
    at::Tensor picked = order.gather(1, at::tensor(index, at::kLong).to(order.device()).unsqueeze(1)).to(at::kCPU);
    index.assign(picked.data_ptr<int64_t>(), picked.data_ptr<int64_t>() + b);
  }
  return index;
}

namespace {

constexpr float kMasked = std::numeric_limits<float>::lowest();  // the attention bias of a key not to attend

// Whether the forward returns greedy ids (ForwardOptions::greedy_tokens) rather than logits.
bool greedy_ids(const GenerationOptions& options) { return options.temperature <= 0 && !options.return_logits; }

// values[row] for each of `rows`, in that order: a per-row vector after rows leave the batch.
std::vector<int64_t> pick_rows(const std::vector<int64_t>& values, const std::vector<int64_t>& rows) {
  std::vector<int64_t> picked;
  for (int64_t row : rows) picked.push_back(values[static_cast<size_t>(row)]);
  return picked;
}

// The rows being decoded: every row has a slot in the KV cache and the attention bias, and
// all rows write their next key at the same column (`cache.length`). A prompt that joins
// later (continuous batching) is prefilled on its own and copied in right-aligned to that
// column, the columns before it masked; position ids are each row's own, so where a row
// sits in the cache changes no arithmetic of it. When the columns run out, every row's
// live span moves left (compact_columns).
class RunningBatch {
 public:
  RunningBatch(const Qwen2Model& model, const std::vector<GenerationPrompt>& prompts, const GenerationOptions& options)
      : model_(model), prompts_(prompts), options_(options), device_(model.device()) {
    for (const auto& prompt : prompts) {
      const int64_t length = prompt.embeds.defined() ? prompt.embeds.size(0) : static_cast<int64_t>(prompt.ids.size());
      NLA_CHECK(length > 0, "empty prompt");
      lengths_.push_back(length);
    }
    longest_prompt_ = *std::max_element(lengths_.begin(), lengths_.end());
  }

  // Prefills `sequences` into a new batch of that many rows (left or right padding as the
  // options say), padded to the longest prompt of all, so later prompts fit before its column.
  // Returns the first tokens' logits or greedy ids.
  ForwardOutput start(const std::vector<int64_t>& sequences, int64_t waiting) {
    const int64_t b = static_cast<int64_t>(sequences.size());
    // A refilled row needs up to max_new_tokens columns after its prompt; with prompts waiting
    // there is room for as many again, so the columns are compacted at most every max_new_tokens steps.
    const int64_t capacity = longest_prompt_ + options_.max_new_tokens * (waiting > 0 ? 2 : 1);
    cache_ = model_.make_cache(b, capacity);
    bias_ = at::full({b, 1, 1, capacity}, kMasked, at::TensorOptions().dtype(at::kFloat).device(device_));
    sequence_ = sequences;
    ForwardOutput out = prefill(sequences, longest_prompt_, options_.left_padding, &cache_, &first_column_);
    for (int64_t row = 0; row < b; ++row) unmask_prompt(row);
    return out;
  }

  // Prefills `sequences` into the rows `slots` (finished rows), right-aligned to the current column.
  ForwardOutput refill(const std::vector<int64_t>& slots, const std::vector<int64_t>& sequences) {
    int64_t width = 0;
    for (int64_t sequence : sequences) width = std::max(width, lengths_[static_cast<size_t>(sequence)]);
    KVCache fresh = model_.make_cache(static_cast<int64_t>(sequences.size()), width);
    std::vector<int64_t> fresh_first;
    ForwardOutput out = prefill(sequences, width, /*left_padding=*/true, &fresh, &fresh_first);
    const int64_t column = cache_.length, begin = column - width;
    NLA_CHECK(begin >= 0, "refill: prompt of ", width, " tokens before column ", column);
    at::Tensor rows = at::tensor(slots, at::kLong).to(device_);
    for (size_t l = 0; l < cache_.keys.size(); ++l) {
      // Stale keys of the row's last sequence are masked, but zeroed: 0 * NaN would not be 0.
      cache_.keys[l].narrow(2, 0, column).index_fill_(0, rows, 0);
      cache_.values[l].narrow(2, 0, column).index_fill_(0, rows, 0);
      cache_.keys[l].narrow(2, begin, width).index_copy_(0, rows, fresh.keys[l]);
      cache_.values[l].narrow(2, begin, width).index_copy_(0, rows, fresh.values[l]);
    }
    bias_.index_fill_(0, rows, kMasked);
    for (size_t i = 0; i < slots.size(); ++i) {
      const int64_t row = slots[i], sequence = sequences[i];
      sequence_[static_cast<size_t>(row)] = sequence;
      first_column_[static_cast<size_t>(row)] = begin + fresh_first[i];
      unmask_prompt(row);
    }
    return out;
  }

  // One token for every row: `tokens[row]` (B) int64, on the host or on the model's device
  // (a previous step's greedy ids, never read back), at position `positions[row]`.
  ForwardOutput step(const at::Tensor& tokens, const std::vector<int64_t>& positions) {
    if (cache_.length == cache_.capacity) compact_columns();
    const int64_t b = rows(), column = cache_.length;
    bias_.narrow(3, column, 1).zero_();
    if (static_shapes_) return static_step(tokens, positions);
    ForwardInput input;
    input.input_ids = tokens.to(device_).view({b, 1});
    input.position_ids = at::tensor(positions, at::kLong).to(device_).view({b, 1});
    input.attention_bias = bias_.narrow(3, 0, column + 1);
    return model_.forward(input, forward_options(b), &cache_);
  }

  // Drops rows (their cache and bias go with them); `keep` lists the rows that stay, in order.
  void keep_rows(const std::vector<int64_t>& keep) {
    at::Tensor index = at::tensor(keep, at::kLong).to(device_);
    for (auto& key : cache_.keys) key = key.index_select(0, index);
    for (auto& value : cache_.values) value = value.index_select(0, index);
    bias_ = bias_.index_select(0, index);
    sequence_ = pick_rows(sequence_, keep);
    first_column_ = pick_rows(first_column_, keep);
  }

  // A finished row no longer holds columns: compaction may move past its keys.
  void release(int64_t row) { first_column_[static_cast<size_t>(row)] = cache_.capacity; }

  int64_t rows() const { return static_cast<int64_t>(sequence_.size()); }
  bool static_shapes() const { return static_shapes_; }
  size_t sequence(int64_t row) const { return static_cast<size_t>(sequence_[static_cast<size_t>(row)]); }
  int64_t prompt_length(size_t sequence) const { return lengths_[sequence]; }

 private:
  // The options of a forward over `b` rows of one token each (a decode step): logits, or
  // greedy ids, at that token. The prefill sets its own logits_index.
  ForwardOptions forward_options(int64_t b) const {
    ForwardOptions forward_options;
    forward_options.steering = options_.steering;
    forward_options.logits_index = at::zeros({b}, at::TensorOptions().dtype(at::kLong).device(device_));
    forward_options.greedy_tokens = greedy_ids(options_);
    return forward_options;
  }

  // Lets `row` attend to its prompt's columns (the columns after it open as it decodes).
  void unmask_prompt(int64_t row) {
    bias_[row][0][0].narrow(0, first_column_[static_cast<size_t>(row)], lengths_[sequence(row)]).zero_();
  }

  // The prompts of `sequences` padded to `width` into `cache` (from column 0); first[i] is
  // the column where prompt i begins. Logits (or greedy ids) at each prompt's last token.
  ForwardOutput prefill(const std::vector<int64_t>& sequences, int64_t width, bool left_padding, KVCache* cache,
                        std::vector<int64_t>* first) {
    const int64_t b = static_cast<int64_t>(sequences.size()), c = model_.config().hidden_size;
    at::Tensor embeds = at::zeros({b, width, c}, at::TensorOptions().dtype(model_.dtype()).device(device_));
    at::Tensor mask = at::zeros({b, width}, at::TensorOptions().dtype(at::kLong).device(device_));
    std::vector<int64_t> last_index, inject_batch, inject_position;
    std::vector<at::Tensor> inject_vectors;
    first->clear();
    for (int64_t i = 0; i < b; ++i) {
      const GenerationPrompt& prompt = prompts_[static_cast<size_t>(sequences[static_cast<size_t>(i)])];
      const int64_t length = lengths_[static_cast<size_t>(sequences[static_cast<size_t>(i)])];
      const int64_t offset = left_padding ? width - length : 0;
      first->push_back(offset);
      last_index.push_back(offset + length - 1);
      at::Tensor e = prompt.embeds.defined()
                         ? prompt.embeds.to(device_, model_.dtype())
                         : model_.embed(at::tensor(prompt.ids, at::kLong).to(device_).unsqueeze(0)).squeeze(0);  // (L, C)
      embeds[i].narrow(0, offset, length).copy_(e);
      mask[i].narrow(0, offset, length).fill_(1);
      for (const auto& [position, vector] : prompt.injections) {
        NLA_CHECK(position >= 0 && position < length, "injection position ", position, " outside prompt of ", length);
        inject_batch.push_back(i);
        inject_position.push_back(offset + position);
        inject_vectors.push_back(vector.reshape({c}));
      }
    }
    ForwardInput input;
    input.inputs_embeds = embeds;
    input.attention_mask = mask;
    if (!inject_vectors.empty()) {
      input.injection.batch_index = at::tensor(inject_batch, at::kLong).to(device_);
      input.injection.position = at::tensor(inject_position, at::kLong).to(device_);
      input.injection.vectors = at::stack(inject_vectors).to(device_);
    }
    ForwardOptions forward_options = this->forward_options(b);
    forward_options.logits_index = at::tensor(last_index, at::kLong).to(device_);
    return model_.forward(input, forward_options, cache);
  }

  // The decode step with the same tensors every time (the cache, the bias, the step's inputs
  // and outputs), so one CUDA graph replays it: captured at the first step when asked for and
  // the build has CUDA graphs, else run eagerly with the same shapes.
  ForwardOutput static_step(const at::Tensor& tokens, const std::vector<int64_t>& positions) {
    const int64_t b = rows();
    if (!step_ids_.defined()) {
      step_ids_ = at::zeros({b, 1}, at::TensorOptions().dtype(at::kLong).device(device_));
      step_positions_ = at::zeros({b, 1}, at::TensorOptions().dtype(at::kLong).device(device_));
      cache_.write_column = at::zeros({1}, at::TensorOptions().dtype(at::kLong).device(device_));
    }
    step_ids_.copy_(tokens.view({b, 1}));
    step_positions_.copy_(at::tensor(positions, at::kLong).view({b, 1}));
    cache_.write_column.fill_(cache_.length);
    auto run = [this, b] {
      ForwardInput input;
      input.input_ids = step_ids_;
      input.position_ids = step_positions_;
      input.attention_bias = bias_;
      step_out_ = model_.forward(input, forward_options(b), &cache_);
    };
    if (graph_) {
      graph_->replay();
    } else if (options_.cuda_graphs && device_.is_cuda() && !capture_tried_) {
      capture_tried_ = true;
      graph_ = capture_cuda_graph(device_, run);
      if (graph_) graph_->replay();  // the capture recorded the step without running it
    } else {
      run();
    }
    cache_.length += 1;
    return step_out_;
  }

  // Moves every row's columns left by the first column any row still uses (its prompt's
  // start), freeing that many columns at the end. Keys keep their rotary positions.
  void compact_columns() {
    const int64_t column = cache_.length;
    const int64_t shift = *std::min_element(first_column_.begin(), first_column_.end());
    NLA_CHECK(shift > 0, "generate: KV cache full (", column, " columns) and no column free");
    const int64_t kept = column - shift;
    for (auto* tensors : {&cache_.keys, &cache_.values})
      for (auto& tensor : *tensors) tensor.narrow(2, 0, kept).copy_(tensor.narrow(2, shift, kept).clone());
    bias_.narrow(3, 0, kept).copy_(bias_.narrow(3, shift, kept).clone());
    bias_.narrow(3, kept, bias_.size(3) - kept).fill_(kMasked);
    for (auto& first : first_column_) first -= shift;
    cache_.length = kept;
  }

  const Qwen2Model& model_;
  const std::vector<GenerationPrompt>& prompts_;
  const GenerationOptions& options_;
  const c10::Device device_;
  std::vector<int64_t> lengths_;  // per prompt
  int64_t longest_prompt_ = 0;
  KVCache cache_;                    // (rows, KV, capacity, D) per block
  at::Tensor bias_;                  // (rows, 1, 1, capacity) float: 0 where a row may attend
  std::vector<int64_t> sequence_;    // per row: the prompt it decodes
  std::vector<int64_t> first_column_;  // per row: where its prompt begins
  // The static-shape decode step (static_step).
  const bool static_shapes_ = options_.static_decode_step ||
                              (options_.cuda_graphs && device_.is_cuda() && options_.steering.empty());
  at::Tensor step_ids_, step_positions_;  // (rows, 1) int64
  ForwardOutput step_out_;
  std::unique_ptr<CapturedWork> graph_;
  bool capture_tried_ = false;
};

// Each row's next token from a forward's output: its greedy ids, or sampled from its logits
// with each sequence's own generator (`spare` for rows whose sequence has ended).
std::vector<int64_t> next_tokens(const ForwardOutput& out, const GenerationOptions& options,
                                 const std::vector<at::Generator*>& generators) {
  if (out.next_tokens.defined()) {
    at::Tensor ids = out.next_tokens.to(at::kCPU).contiguous();
    return std::vector<int64_t>(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + ids.numel());
  }
  return sample_tokens(out.logits, options.temperature, options.top_p, generators, options.device_sampling);
}

// What each sequence has generated: its tokens, whether it has ended (a stop token or the
// cap), its seeded generator, and per row of the batch the next input and its position.
class Sequences {
 public:
  Sequences(int64_t n, const GenerationOptions& options, int64_t rows) : options_(options) {
    for (int64_t i = 0; i < n; ++i)
      generators_.push_back(at::make_generator<at::CPUGeneratorImpl>(
          options.seeds.empty() ? options.seed + static_cast<uint64_t>(i) : options.seeds[static_cast<size_t>(i)]));
    result_.tokens.resize(static_cast<size_t>(n));
    result_.finish_reasons.assign(static_cast<size_t>(n), "length");
    finished_.assign(static_cast<size_t>(n), false);
    if (options.return_logits) logits_.resize(static_cast<size_t>(n));
    next.assign(static_cast<size_t>(rows), options.pad_token_id);
    position.assign(static_cast<size_t>(rows), 0);
  }

  bool finished(size_t sequence) const { return finished_[sequence]; }
  int64_t generated(size_t sequence) const { return static_cast<int64_t>(result_.tokens[sequence].size()); }

  // The host's picks of a forward over `rows` of the batch: greedy ids, or sampled.
  void pick(RunningBatch& batch, const std::vector<int64_t>& rows, const ForwardOutput& output) {
    std::vector<at::Generator*> row_generators;
    for (int64_t row : rows) {
      const size_t sequence = batch.sequence(row);
      row_generators.push_back(finished_[sequence] ? &spare_ : &generators_[sequence]);
    }
    absorb(batch, rows, next_tokens(output, options_, row_generators), options_.return_logits ? &output : nullptr);
  }

  // Appends rows[i]'s new token picked[i]; a sequence ends at a stop token or the cap, and
  // tokens after its end (a deferred read-back ran past it) are dropped.
  void absorb(RunningBatch& batch, const std::vector<int64_t>& rows, const std::vector<int64_t>& picked,
              const ForwardOutput* with_logits) {
    const auto& stops = options_.stop_token_ids;
    for (size_t i = 0; i < rows.size(); ++i) {
      const int64_t row = rows[i];
      const size_t sequence = batch.sequence(row);
      if (finished_[sequence]) continue;
      auto& tokens = result_.tokens[sequence];
      tokens.push_back(picked[i]);
      if (with_logits) logits_[sequence].push_back(with_logits->logits[static_cast<int64_t>(i)].to(at::kCPU));
      next[static_cast<size_t>(row)] = picked[i];
      position[static_cast<size_t>(row)] = batch.prompt_length(sequence) + static_cast<int64_t>(tokens.size()) - 1;
      if (std::find(stops.begin(), stops.end(), picked[i]) != stops.end()) {
        finished_[sequence] = true;
        result_.finish_reasons[sequence] = "stop";
      } else if (static_cast<int64_t>(tokens.size()) == options_.max_new_tokens) {
        finished_[sequence] = true;
      }
      if (finished_[sequence]) batch.release(row);
    }
  }

  // The rows that stay (in order) when the batch drops the others.
  void keep_rows(const std::vector<int64_t>& rows) {
    next = pick_rows(next, rows);
    position = pick_rows(position, rows);
  }

  GenerationResult take_result(int64_t vocab) {
    if (options_.return_logits) {  // step_logits[k] (N, V): row i's logits before its k-th new token
      const int64_t n = static_cast<int64_t>(logits_.size());
      for (int64_t k = 0; k < options_.max_new_tokens; ++k) {
        at::Tensor step = at::zeros({n, vocab}, at::kFloat);
        bool any = false;
        for (int64_t i = 0; i < n; ++i)
          if (static_cast<int64_t>(logits_[static_cast<size_t>(i)].size()) > k) {
            step[i].copy_(logits_[static_cast<size_t>(i)][static_cast<size_t>(k)]);
            any = true;
          }
        if (!any) break;
        result_.step_logits.push_back(step);
      }
    }
    return std::move(result_);
  }

  std::vector<int64_t> next, position;  // per row of the batch: the next input token and its position id

 private:
  const GenerationOptions& options_;
  std::vector<at::Generator> generators_;  // per sequence
  at::Generator spare_ = at::make_generator<at::CPUGeneratorImpl>(0);  // draws for rows already ended
  GenerationResult result_;
  std::vector<bool> finished_;
  std::vector<std::vector<at::Tensor>> logits_;  // per sequence, with return_logits
};

}  // namespace

GenerationResult generate(const Qwen2Model& model, const std::vector<GenerationPrompt>& prompts,
                          const GenerationOptions& options) {
  c10::InferenceMode inference;
  const int64_t n = static_cast<int64_t>(prompts.size());
  NLA_CHECK(n > 0, "no prompts");
  NLA_CHECK(options.seeds.empty() || static_cast<int64_t>(options.seeds.size()) == n, "one seed per sequence");
  NLA_CHECK(options.max_new_tokens >= 1, "max_new_tokens >= 1");
  NLA_CHECK(options.max_batch >= 0 && options.check_every >= 0, "max_batch and check_every >= 0");
  const int64_t slots = options.max_batch > 0 ? std::min(options.max_batch, n) : n;
  // Greedy on a GPU, the host reads the new ids back every `check_every` steps (one
  // synchronisation); meanwhile each step's ids feed the next on the device.
  const int64_t check_every = options.check_every > 0 ? options.check_every : (model.device().is_cuda() ? 8 : 1);
  const bool deferred = check_every > 1 && greedy_ids(options);

  RunningBatch batch(model, prompts, options);
  Sequences sequences(n, options, slots);
  std::vector<int64_t> first(static_cast<size_t>(slots));
  for (int64_t i = 0; i < slots; ++i) first[static_cast<size_t>(i)] = i;
  int64_t waiting = slots;  // the next prompt to start
  sequences.pick(batch, first, batch.start(first, n - slots));

  while (true) {
    std::vector<int64_t> free_rows, live_rows, all_rows;
    for (int64_t row = 0; row < batch.rows(); ++row) {
      (sequences.finished(batch.sequence(row)) ? free_rows : live_rows).push_back(row);
      all_rows.push_back(row);
    }
    // Refill: finished rows take waiting prompts once they are a quarter of the batch (or no
    // row is left), so prompts are prefilled a few at a time; their first tokens are picked now.
    if (!free_rows.empty() && waiting < n && (free_rows.size() * 4 >= all_rows.size() || live_rows.empty())) {
      std::vector<int64_t> rows, starting;
      for (size_t i = 0; i < free_rows.size() && waiting < n; ++i) {
        rows.push_back(free_rows[i]);
        starting.push_back(waiting++);
      }
      sequences.pick(batch, rows, batch.refill(rows, starting));
      continue;
    }
    if (live_rows.empty()) break;
    // Shrink: without prompts waiting, finished rows leave the batch once they are a quarter
    // of it (not with static shapes: a replayed step keeps its batch).
    if (waiting == n && !batch.static_shapes() && free_rows.size() * 4 >= all_rows.size()) {
      batch.keep_rows(live_rows);
      sequences.keep_rows(live_rows);
      continue;
    }
    // Decode: one step, or (deferred) up to check_every steps, no further than the live row
    // with the most tokens left, read back at once.
    if (!deferred) {
      sequences.pick(batch, all_rows, batch.step(at::tensor(sequences.next, at::kLong), sequences.position));
      continue;
    }
    int64_t window = 1;
    for (int64_t row : live_rows)
      window = std::max(window, options.max_new_tokens - sequences.generated(batch.sequence(row)));
    window = std::min(window, check_every);
    std::vector<at::Tensor> ids;  // (B) per step, on the device
    at::Tensor feed = at::tensor(sequences.next, at::kLong);
    std::vector<int64_t> position = sequences.position;
    for (int64_t w = 0; w < window; ++w) {
      ids.push_back(batch.step(feed, position).next_tokens.clone());  // a replayed graph reuses its output
      feed = ids.back();
      for (auto& p : position) ++p;
    }
    at::Tensor read_back = at::stack(ids, 1).to(at::kCPU).contiguous();  // (B, window): the one synchronisation
    for (int64_t w = 0; w < window; ++w) {
      at::Tensor column = read_back.select(1, w).contiguous();
      sequences.absorb(batch, all_rows,
                       std::vector<int64_t>(column.data_ptr<int64_t>(), column.data_ptr<int64_t>() + column.numel()),
                       nullptr);
    }
  }
  return sequences.take_result(model.config().vocab_size);
}

}  // namespace nla::model
