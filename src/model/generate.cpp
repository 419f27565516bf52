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
#include <string>

#include "nla/core/error.hpp"

namespace nla::model {

namespace {

// The inverse CDF of each row of probs (B, V) float32 on the CPU: the first index whose
// running float64 sum exceeds u * total, total the row's float64 sum. The same arithmetic
// as a float64 cumsum + searchsorted(right) (a sequential sum per row), without writing the
// (B, V) float64 cumsum. A row's sum is one chain of dependent adds, so kRowsAtOnce rows
// advance together: their chains overlap in the core while each keeps its own order.
constexpr int64_t kRowsAtOnce = 8;

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
      const float* p[kRowsAtOnce];
      double total[kRowsAtOnce] = {}, draw[kRowsAtOnce] = {}, running[kRowsAtOnce] = {};
      bool open[kRowsAtOnce] = {};
      for (int64_t r = 0; r < count; ++r) p[r] = data + (first + r) * v;
      for (int64_t j = 0; j < v; ++j)
        for (int64_t r = 0; r < count; ++r) total[r] += static_cast<double>(p[r][j]);
      int64_t still_open = 0;
      for (int64_t r = 0; r < count; ++r) {
        totals[static_cast<size_t>(first + r)] = total[r];
        open[r] = std::isfinite(total[r]) && total[r] > 0;  // else reported below, outside the parallel region
        draw[r] = uniforms[static_cast<size_t>(first + r)] * total[r];
        still_open += open[r] ? 1 : 0;
      }
      for (int64_t j = 0; j < v && still_open > 0; ++j)
        for (int64_t r = 0; r < count; ++r) {
          if (!open[r]) continue;
          running[r] += static_cast<double>(p[r][j]);
          if (running[r] > draw[r]) {
            index[static_cast<size_t>(first + r)] = j;
            open[r] = false;
            --still_open;
          }
        }
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

GenerationResult generate(const Qwen2Model& model, const std::vector<GenerationPrompt>& prompts,
                          const GenerationOptions& options) {
  c10::InferenceMode inference;
  const int64_t b = static_cast<int64_t>(prompts.size());
  NLA_CHECK(b > 0, "no prompts");
  NLA_CHECK(options.seeds.empty() || static_cast<int64_t>(options.seeds.size()) == b, "one seed per sequence");
  NLA_CHECK(options.max_new_tokens >= 1, "max_new_tokens >= 1");
  const int64_t c = model.config().hidden_size;
  const auto device = model.device();
  const auto long_options = at::TensorOptions().dtype(at::kLong).device(device);

  std::vector<int64_t> lengths;
  for (const auto& prompt : prompts) {
    int64_t length = prompt.embeds.defined() ? prompt.embeds.size(0) : static_cast<int64_t>(prompt.ids.size());
    NLA_CHECK(length > 0, "empty prompt");
    lengths.push_back(length);
  }
  const int64_t p = *std::max_element(lengths.begin(), lengths.end());
  const int64_t capacity = p + options.max_new_tokens;

  // Padded prompt embeddings (B, P, C), attention mask (B, capacity), injections.
  at::Tensor embeds = at::zeros({b, p, c}, at::TensorOptions().dtype(model.dtype()).device(device));
  at::Tensor mask = at::zeros({b, capacity}, long_options);
  std::vector<int64_t> offsets, last_index;
  std::vector<int64_t> inject_batch, inject_position;
  std::vector<at::Tensor> inject_vectors;
  for (int64_t i = 0; i < b; ++i) {
    const GenerationPrompt& prompt = prompts[static_cast<size_t>(i)];
    const int64_t length = lengths[static_cast<size_t>(i)];
    const int64_t offset = options.left_padding ? p - length : 0;
    offsets.push_back(offset);
    last_index.push_back(offset + length - 1);
    at::Tensor e = prompt.embeds.defined()
                       ? prompt.embeds.to(device, model.dtype())
                       : model.embed(at::tensor(prompt.ids, at::kLong).to(device).unsqueeze(0)).squeeze(0);  // (L, C)
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
  input.attention_mask = mask.narrow(1, 0, p);
  if (!inject_vectors.empty()) {
    input.injection.batch_index = at::tensor(inject_batch, at::kLong).to(device);
    input.injection.position = at::tensor(inject_position, at::kLong).to(device);
    input.injection.vectors = at::stack(inject_vectors).to(device);
  }
  ForwardOptions forward_options;
  forward_options.steering = options.steering;
  forward_options.logits_index = at::tensor(last_index, at::kLong).to(device);
  KVCache cache = model.make_cache(b, capacity);
  at::Tensor logits = model.forward(input, forward_options, &cache).logits;  // (B, V)

  std::vector<at::Generator> generators;
  for (int64_t i = 0; i < b; ++i)
    generators.push_back(at::make_generator<at::CPUGeneratorImpl>(
        options.seeds.empty() ? options.seed + static_cast<uint64_t>(i) : options.seeds[static_cast<size_t>(i)]));
  GenerationResult result;
  result.tokens.resize(static_cast<size_t>(b));
  result.finish_reasons.assign(static_cast<size_t>(b), "length");
  std::vector<bool> finished(static_cast<size_t>(b), false);
  // Rows still generating: position in the running batch -> sequence. Finished rows leave
  // the batch (and the KV cache) once they are a quarter of it, so a rollout whose answers
  // close early stops paying for them; every row's arithmetic is its own either way.
  std::vector<int64_t> active(static_cast<size_t>(b));
  for (int64_t i = 0; i < b; ++i) active[static_cast<size_t>(i)] = i;
  forward_options.logits_index = at::zeros({b}, long_options);
  for (int64_t step = 0; step < options.max_new_tokens; ++step) {
    if (options.return_logits) {
      at::Tensor full = at::zeros({b, logits.size(-1)}, logits.options().device(at::kCPU));
      full.index_copy_(0, at::tensor(active, at::kLong), logits.to(at::kCPU));
      result.step_logits.push_back(full);
    }
    const int64_t rows = static_cast<int64_t>(active.size());
    std::vector<int64_t> next(static_cast<size_t>(rows), options.pad_token_id);
    // Greedy stays on the device (only B ids travel to the host); sampling is batched.
    std::vector<at::Generator*> row_generators;
    for (int64_t row = 0; row < rows; ++row) row_generators.push_back(&generators[static_cast<size_t>(active[static_cast<size_t>(row)])]);
    const std::vector<int64_t> picked = sample_tokens(logits, options.temperature, options.top_p, row_generators,
                                                      options.device_sampling);
    int64_t finished_rows = 0;
    for (int64_t row = 0; row < rows; ++row) {
      const size_t k = static_cast<size_t>(active[static_cast<size_t>(row)]);
      if (finished[k]) {
        ++finished_rows;
        continue;
      }
      const int64_t token = picked[static_cast<size_t>(row)];
      next[static_cast<size_t>(row)] = token;
      result.tokens[k].push_back(token);
      if (std::find(options.stop_token_ids.begin(), options.stop_token_ids.end(), token) !=
          options.stop_token_ids.end()) {
        finished[k] = true;
        result.finish_reasons[k] = "stop";
        ++finished_rows;
      }
    }
    if (step + 1 == options.max_new_tokens || finished_rows == rows) break;
    mask.narrow(1, p + step, 1).fill_(1);
    if (finished_rows * 4 >= rows) {
      std::vector<int64_t> keep_rows, keep_next;
      std::vector<int64_t> still;
      for (int64_t row = 0; row < rows; ++row) {
        const int64_t sequence = active[static_cast<size_t>(row)];
        if (finished[static_cast<size_t>(sequence)]) continue;
        keep_rows.push_back(row);
        keep_next.push_back(next[static_cast<size_t>(row)]);
        still.push_back(sequence);
      }
      at::Tensor keep = at::tensor(keep_rows, at::kLong).to(device);
      for (auto& key : cache.keys) key = key.index_select(0, keep);
      for (auto& value : cache.values) value = value.index_select(0, keep);
      mask = mask.index_select(0, keep);
      active = std::move(still);
      next = std::move(keep_next);
      forward_options.logits_index = at::zeros({static_cast<int64_t>(active.size())}, long_options);
    }
    ForwardInput step_input;
    step_input.input_ids = at::tensor(next, at::kLong).to(device).unsqueeze(1);  // (B, 1)
    step_input.attention_mask = mask.narrow(1, 0, p + step + 1);
    logits = model.forward(step_input, forward_options, &cache).logits;  // (B, V)
  }
  return result;
}

}  // namespace nla::model
