// Texts of the steering commands: reading, tokenizing, rank chunks, residuals at a layer.
#include "nla/steer/texts.hpp"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <algorithm>

#include "nla/core/error.hpp"
#include "nla/core/world.hpp"
#include "nla/data/corpus.hpp"
#include "nla/dist/text_collectives.hpp"
#include "nla/eval/metrics.hpp"  // median_of

namespace nla::steer {

std::vector<std::string> read_texts(const std::string& path, const std::string& text_field, const std::string& option,
                                    int64_t max_texts) {
  NLA_CHECK_INPUT(!path.empty(), "option '", option, "': expected a JSONL file of {\"", text_field, "\": ...} records");
  data::CorpusOptions corpus;
  corpus.paths = {path};
  corpus.format = data::CorpusFormat::jsonl;
  corpus.text_field = text_field;
  corpus.max_docs = max_texts;
  data::CorpusReader reader(corpus);  // InputError naming the file and line for bad records
  std::vector<std::string> texts;
  data::Document document;
  while (reader.next(document)) texts.push_back(std::move(document.text));
  NLA_CHECK_INPUT(!texts.empty(), path, ": no texts (field '", text_field, "', option '", option, "'; skipped: ",
                  reader.skipped().to_string(), ")");
  return texts;
}

std::vector<std::vector<int64_t>> tokenize_texts(const tokenizer::Tokenizer& tokenizer,
                                                 const std::vector<std::string>& texts, int64_t max_tokens,
                                                 const std::string& option) {
  std::vector<std::vector<int64_t>> tokens;
  for (size_t i = 0; i < texts.size(); ++i) {
    auto ids = tokenizer.encode(texts[i]);
    NLA_CHECK_INPUT(!ids.empty(), "option '", option, "': text ", i, " has no tokens");
    if (static_cast<int64_t>(ids.size()) > max_tokens) ids.resize(static_cast<size_t>(max_tokens));
    tokens.emplace_back(ids.begin(), ids.end());
  }
  return tokens;
}

std::vector<std::vector<int64_t>> rank_chunks(int64_t items, int64_t batch, int rank, int ranks) {
  std::vector<std::vector<int64_t>> chunks;
  for (int64_t chunk = rank; chunk * batch < items; chunk += ranks) {
    chunks.emplace_back();
    for (int64_t i = chunk * batch; i < std::min(items, (chunk + 1) * batch); ++i) chunks.back().push_back(i);
  }
  return chunks;
}

at::Tensor typical_rows(const at::Tensor& residual, int64_t min_position) {
  const int64_t n = residual.size(0), first = std::min(min_position, n - 1);
  return residual.narrow(0, first, n - first);
}

double gathered_median(MPI_Comm comm, const std::vector<double>& values) {
  int rank = 0;
  NLA_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  const auto parts = dist::gather_doubles(comm, values, 0);
  double median = 0;
  if (rank == 0) {
    std::vector<double> all;
    for (const auto& part : parts) all.insert(all.end(), part.begin(), part.end());
    median = eval::median_of(std::move(all));
  }
  return dist::broadcast_double(comm, median);
}

model::ForwardInput right_padded(const std::vector<std::vector<int64_t>>& tokens, c10::Device device) {
  int64_t longest = 0;
  for (const auto& ids : tokens) longest = std::max<int64_t>(longest, static_cast<int64_t>(ids.size()));
  const int64_t b = static_cast<int64_t>(tokens.size());
  at::Tensor ids = at::zeros({b, longest}, at::kLong), mask = at::zeros({b, longest}, at::kLong);  // (B, T)
  for (int64_t i = 0; i < b; ++i) {
    const auto& row = tokens[static_cast<size_t>(i)];
    const int64_t length = static_cast<int64_t>(row.size());
    ids[i].narrow(0, 0, length).copy_(at::tensor(row, at::kLong));
    mask[i].narrow(0, 0, length).fill_(1);
  }
  model::ForwardInput input;
  input.input_ids = ids.to(device);
  input.attention_mask = mask.to(device);
  return input;
}

std::vector<at::Tensor> layer_residuals(const model::Qwen2Model& net, const std::vector<std::vector<int64_t>>& tokens,
                                        int64_t layer, const std::vector<model::Steering>& steering) {
  c10::NoGradGuard no_grad;
  model::ForwardOptions options;
  options.capture_layers = {layer};
  options.stop_after_layer = layer;
  options.compute_logits = false;
  options.steering = steering;
  at::Tensor captured = net.forward(right_padded(tokens, net.device()), options).captured.at(layer);  // (B, T, C)
  captured = captured.to(at::kCPU, at::kFloat);
  std::vector<at::Tensor> rows;
  for (size_t i = 0; i < tokens.size(); ++i)
    rows.push_back(captured[static_cast<int64_t>(i)].narrow(0, 0, static_cast<int64_t>(tokens[i].size())).clone());
  return rows;
}

}  // namespace nla::steer
