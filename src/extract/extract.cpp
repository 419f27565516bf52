// nla extract: corpus -> tokens -> sampled positions -> batched truncated forward ->
// collective writes into the activation store. See include/nla/extract/extract.hpp.
#include "nla/core/timing.hpp"  // defines: seconds_since
#include "nla/extract/extract.hpp"

#include <c10/core/GradMode.h>  // c10::NoGradGuard (LibTorch 2.x has no at:: alias here)
#include <ATen/ATen.h>
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <map>
#include <numeric>
#include <optional>
#include <sstream>

#include "nla/core/atomic_file.hpp"
#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/core/seeding.hpp"
#include "nla/core/log.hpp"
#include "nla/core/progress.hpp"
#include "nla/core/world.hpp"
#include "nla/data/corpus.hpp"
#include "nla/dist/device.hpp"      // defines: resolve_compute
#include "nla/model/layer_list.hpp"
#include "nla/model/qwen2.hpp"
#include "nla/store/activation_store.hpp"

namespace nla::extract {

namespace {

uint64_t fnv1a(const std::string& text) {
  uint64_t hash = 1469598103934665603ull;
  for (unsigned char c : text) hash = (hash ^ c) * 1099511628211ull;
  return hash;
}

struct ExtractDocument {
  int64_t corpus_index = 0;
  store::StoreDocument stored;                // index filled after the global numbering
  std::vector<tokenizer::TokenId> tokens;     // truncated to max_tokens
};

void validate(const ExtractOptions& o) {
  NLA_CHECK_INPUT(!o.model.empty(), "option 'model': expected a checkpoint directory");
  NLA_CHECK_INPUT(o.positions_per_doc >= 1, "option 'positions-per-doc': expected >= 1, got ", o.positions_per_doc);
  NLA_CHECK_INPUT(o.min_position >= 0, "option 'min-position': expected >= 0, got ", o.min_position);
  NLA_CHECK_INPUT(o.max_tokens > o.min_position, "option 'max-tokens': expected > min-position (", o.min_position,
                  "), got ", o.max_tokens);
  NLA_CHECK_INPUT(o.batch_docs >= 1, "option 'batch-docs': expected >= 1, got ", o.batch_docs);
  NLA_CHECK_INPUT(o.doc_stride >= 1, "option 'doc-stride': expected >= 1, got ", o.doc_stride);
  NLA_CHECK_INPUT(o.doc_offset >= 0 && o.doc_offset < o.doc_stride, "option 'doc-offset': expected in [0, doc-stride), got ",
                  o.doc_offset);
  NLA_CHECK_INPUT(!o.out.empty(), "option 'out': expected a file name");
}

int64_t allreduce_int64(int64_t value, MPI_Op op) {
  int64_t result = 0;
  NLA_CHECK_MPI(MPI_Allreduce(&value, &result, 1, MPI_INT64_T, op, MPI_COMM_WORLD));
  return result;
}

}  // namespace

std::vector<int32_t> sample_positions(const std::vector<tokenizer::TokenId>& tokens, const tokenizer::Tokenizer& tok,
                                      int64_t count, int64_t min_position, uint64_t seed,
                                      const std::string& document_id) {
  std::vector<int32_t> eligible;
  for (int64_t position = min_position; position < static_cast<int64_t>(tokens.size()); ++position)
    if (!tok.is_special(tokens[position])) eligible.push_back(static_cast<int32_t>(position));
  uint64_t state = seed ^ fnv1a(document_id);
  // Partial Fisher-Yates: the first `count` entries become a uniform sample.
  int64_t take = std::min<int64_t>(count, static_cast<int64_t>(eligible.size()));
  for (int64_t i = 0; i < take; ++i) {
    int64_t j = i + static_cast<int64_t>(splitmix64_next(state) % static_cast<uint64_t>(eligible.size() - i));
    std::swap(eligible[i], eligible[j]);
  }
  eligible.resize(take);
  std::sort(eligible.begin(), eligible.end());
  return eligible;
}

namespace {

// This rank's documents: batch b holds the subsample's documents [b*G, (b+1)*G) and goes to
// rank b % ranks; each is tokenized, cut to max-tokens and given its sampled positions.
struct RankDocuments {
  std::vector<ExtractDocument> mine;
  int64_t too_short = 0;         // documents without a position past min-position
  int64_t corpus_documents = 0;  // documents read (every rank reads them all)
  data::SkipCounts skipped;
};

RankDocuments read_my_documents(const ExtractOptions& o, const tokenizer::Tokenizer& tok, int rank, int ranks) {
  data::CorpusOptions corpus_options;
  corpus_options.paths = data::split_corpus_paths(o.corpus.empty() ? data::default_corpus_path() : o.corpus);
  corpus_options.text_field = o.text_field;
  corpus_options.id_field = o.id_field;
  corpus_options.source_field = o.source_field;
  corpus_options.max_docs = o.max_docs;
  data::CorpusReader reader(corpus_options);  // every rank scans all; each keeps its batches
  RankDocuments documents;
  data::Document document;
  while (reader.next(document)) {
    if (document.index % o.doc_stride != o.doc_offset) continue;
    const int64_t kept_index = document.index / o.doc_stride;  // numbering of the subsample
    if ((kept_index / o.batch_docs) % ranks != rank) continue;
    ExtractDocument item;
    item.corpus_index = kept_index;
    item.tokens = tok.encode(document.text);
    if (static_cast<int64_t>(item.tokens.size()) > o.max_tokens) item.tokens.resize(o.max_tokens);
    auto positions = sample_positions(item.tokens, tok, o.positions_per_doc, o.min_position,
                                      static_cast<uint64_t>(o.seed), document.id);
    if (positions.empty()) {
      ++documents.too_short;
      continue;
    }
    item.stored.id = document.id;
    item.stored.source = document.source;
    item.stored.text = std::move(document.text);
    item.stored.positions = positions;
    for (int32_t position : positions) item.stored.tokens.push_back(item.tokens[position]);
    documents.mine.push_back(std::move(item));
  }
  documents.corpus_documents = reader.documents_seen();
  documents.skipped = reader.skipped();
  return documents;
}

// The global document numbering (kept documents in corpus order, agreed over the ranks):
// sets each of `mine`'s store index; returns them as the store lists them, and where each
// store index is in `mine`.
std::vector<store::StoreDocument> number_documents(const ExtractOptions& o, std::vector<ExtractDocument>& mine,
                                                   int64_t corpus_documents, std::map<int64_t, size_t>& item_of_index) {
  const int ranks = world_size();
  std::vector<int64_t> my_indices;
  for (const auto& item : mine) my_indices.push_back(item.corpus_index);
  int my_count = static_cast<int>(my_indices.size());
  std::vector<int> counts(ranks), displacements(ranks);
  NLA_CHECK_MPI(MPI_Allgather(&my_count, 1, MPI_INT, counts.data(), 1, MPI_INT, MPI_COMM_WORLD));
  std::exclusive_scan(counts.begin(), counts.end(), displacements.begin(), 0);
  std::vector<int64_t> kept(std::accumulate(counts.begin(), counts.end(), 0));
  NLA_CHECK_MPI(MPI_Allgatherv(my_indices.data(), my_count, MPI_INT64_T, kept.data(), counts.data(),
                               displacements.data(), MPI_INT64_T, MPI_COMM_WORLD));
  std::sort(kept.begin(), kept.end());
  NLA_CHECK_INPUT(!kept.empty(), o.corpus.empty() ? data::default_corpus_path() : o.corpus,
                  ": no document has a token past min-position ", o.min_position, " (", corpus_documents,
                  " documents read)");
  std::vector<store::StoreDocument> stored;
  for (size_t i = 0; i < mine.size(); ++i) {
    mine[i].stored.index = std::lower_bound(kept.begin(), kept.end(), mine[i].corpus_index) - kept.begin();
    item_of_index[mine[i].stored.index] = i;
    stored.push_back(mine[i].stored);
  }
  return stored;
}

// One batch's forward: the captured layers' rows at the documents' sampled positions,
// appended to rows[k] (layer k of the store), row-major. Returns the batch's tokens.
int64_t forward_batch(const model::Qwen2Model& net, const model::ForwardOptions& forward_options,
                      const std::vector<int>& layers, const std::vector<ExtractDocument>& mine,
                      const std::vector<size_t>& items, std::vector<std::vector<float>>& rows, double& forward_seconds) {
  int64_t longest = 0, tokens_run = 0;
  for (size_t item : items) longest = std::max<int64_t>(longest, mine[item].tokens.size());
  const int64_t batch_size = static_cast<int64_t>(items.size());
  auto ids = at::zeros({batch_size, longest}, at::kLong);   // (B, T), right-padded
  auto mask = at::zeros({batch_size, longest}, at::kLong);  // (B, T)
  for (int64_t b = 0; b < batch_size; ++b) {
    const auto& tokens = mine[items[b]].tokens;
    auto length = static_cast<int64_t>(tokens.size());
    auto row = at::tensor(std::vector<int64_t>(tokens.begin(), tokens.end()), at::kLong);
    ids[b].slice(0, 0, length).copy_(row);
    mask[b].slice(0, 0, length).fill_(1);
    tokens_run += length;
  }
  model::ForwardInput input;
  input.input_ids = ids.to(net.device());
  input.attention_mask = mask.to(net.device());
  auto forward_start = std::chrono::steady_clock::now();
  auto output = net.forward(input, forward_options);
  forward_seconds += seconds_since(forward_start);
  for (size_t k = 0; k < layers.size(); ++k) {
    auto captured = output.captured.at(layers[k]).to(at::kCPU, at::kFloat);  // (B, T, C)
    for (int64_t b = 0; b < batch_size; ++b) {
      const auto& positions = mine[items[b]].stored.positions;
      auto index = at::tensor(std::vector<int64_t>(positions.begin(), positions.end()), at::kLong);
      auto picked = captured[b].index_select(0, index).contiguous();  // (P, C)
      const float* data = picked.data_ptr<float>();
      rows[k].insert(rows[k].end(), data, data + picked.numel());
    }
  }
  return tokens_run;
}

}  // namespace

ExtractSummary run_extraction(const ExtractOptions& o, const std::string& created_by,
                              const std::function<void()>& announce) {
  // ---- setup: options, device, model, tokenizer and corpus, all checked before any output
  // file exists; an input error on any rank is printed once, by rank 0 (run_on_every_rank)
  run_on_every_rank(MPI_COMM_WORLD, [&] { validate(o); });
  const auto compute = dist::resolve_compute(o.device, o.precision);  // collective
  const int rank = world_rank(), ranks = world_size();
  auto start_time = std::chrono::steady_clock::now();
  std::optional<model::Qwen2Config> config_holder;
  std::vector<int> layers;
  std::optional<tokenizer::Tokenizer> tok_holder;
  RankDocuments documents;
  std::optional<model::Qwen2Model> net_holder;
  run_on_every_rank(MPI_COMM_WORLD, [&] {
    config_holder = model::Qwen2Config::from_file(o.model);
    layers = model::parse_layer_list(o.layers, config_holder->num_hidden_layers, "layers");
    tok_holder.emplace(tokenizer::Tokenizer::from_file(o.tokenizer.empty() ? o.model : o.tokenizer));
    // this rank's batches read and tokenized (numbered over all ranks below)
    documents = read_my_documents(o, *tok_holder, rank, ranks);
    // the model, cut after the deepest layer extracted (later blocks are neither loaded nor run)
    model::LoadOptions load;
    load.num_layers = layers.back() + 1;
    load.with_head = false;
    load.device = compute.device;
    load.dtype = compute.dtype;
    net_holder.emplace(model::Qwen2Model::load(o.model, load));
  });
  const model::Qwen2Config& config = *config_holder;
  const tokenizer::Tokenizer& tok = *tok_holder;
  const model::Qwen2Model& net = *net_holder;
  const int deepest = layers.back();
  run_on_root(MPI_COMM_WORLD, [&] {
    NLA_CHECK_INPUT(o.overwrite || !fs::exists(o.out), o.out,
                    ": a complete store exists; pass --overwrite to replace it");
    const std::string parent = fs::parent(o.out);
    if (!parent.empty()) fs::create_directories(parent);
  });

  // ---- documents: numbered over all ranks
  auto& mine = documents.mine;
  std::map<int64_t, size_t> item_of_index;
  auto stored = number_documents(o, mine, documents.corpus_documents, item_of_index);

  // ---- the store: its header, and a writer that resumes a partial one
  store::StoreHeader header;
  header.model = o.model;
  header.model_config = read_file(fs::is_directory(o.model) ? o.model + "/config.json" : o.model);
  header.tokenizer_sha256 = tok.sha256();
  header.created_by = created_by;
  header.device = compute.device_label();  // rank 0's
  header.device_name = compute.device_name;
  header.precision = compute.precision_label();
  header.seed = o.seed;
  header.positions_per_doc = o.positions_per_doc;
  header.checksums = o.checksums;
  header.hidden_size = config.hidden_size;
  header.layers = layers;
  header.skipped = documents.skipped.by_reason();
  header.skipped["too_short"] = allreduce_int64(documents.too_short, MPI_SUM);
  store::ActivationStoreWriter writer(o.out, header, std::move(stored), MPI_COMM_WORLD);
  if (announce) announce();
  ExtractSummary summary;
  summary.documents = writer.n_documents();
  summary.samples = writer.n_samples();
  summary.resumed = writer.resumed();
  log_info("extract: %lld documents (%lld read, skipped: %s too_short=%lld), %lld samples, layers %s -> %s%s",
           static_cast<long long>(summary.documents), static_cast<long long>(documents.corpus_documents),
           documents.skipped.to_string().c_str(), static_cast<long long>(header.skipped["too_short"]),
           static_cast<long long>(summary.samples), o.layers.c_str(), o.out.c_str(),
           writer.resumed() ? " (resuming)" : "");

  // ---- this rank's pending batches (a batch is written in one round, so it is either
  // all done or all pending)
  std::map<int64_t, std::vector<size_t>> batches;  // batch id -> items, in corpus order
  for (const auto& pending : writer.pending_documents())
    batches[mine[item_of_index.at(pending.index)].corpus_index / o.batch_docs].push_back(item_of_index.at(pending.index));
  const int64_t rounds = allreduce_int64(static_cast<int64_t>(batches.size()), MPI_MAX);
  const int64_t total_batches = allreduce_int64(static_cast<int64_t>(batches.size()), MPI_SUM);

  model::ForwardOptions forward_options;
  forward_options.capture_layers.assign(layers.begin(), layers.end());
  forward_options.stop_after_layer = deepest;
  forward_options.compute_logits = false;

  // ---- rounds: every rank forwards one batch (or none) and writes its rows collectively
  Progress progress("extract", total_batches, "batches");
  int64_t my_tokens = 0, batches_done = 0;
  auto batch = batches.begin();
  c10::NoGradGuard no_grad;
  for (int64_t round = 0; round < rounds; ++round) {
    std::vector<int64_t> round_documents;
    std::vector<std::vector<float>> rows(layers.size());
    if (batch != batches.end()) {
      my_tokens += forward_batch(net, forward_options, layers, mine, batch->second, rows, summary.forward_seconds);
      for (size_t item : batch->second) round_documents.push_back(mine[item].stored.index);
      ++batch;
    }
    std::vector<const float*> pointers;
    for (auto& layer_rows : rows) pointers.push_back(layer_rows.data());
    auto write_start = std::chrono::steady_clock::now();
    writer.write_round(round_documents, pointers);
    summary.write_seconds += seconds_since(write_start);
    batches_done += allreduce_int64(round_documents.empty() ? 0 : 1, MPI_SUM);
    progress.set(batches_done);
    if (o.kill_after_batches >= 0 && round + 1 >= o.kill_after_batches && rank == 0) {
      log_warn("extract: --kill-after-batches %lld reached: SIGKILL (testing resume)",
               static_cast<long long>(o.kill_after_batches));
      std::raise(SIGKILL);
    }
  }
  progress.finish();
  writer.finish();
  summary.tokens = allreduce_int64(my_tokens, MPI_SUM);
  summary.seconds = seconds_since(start_time);
  return summary;
}

}  // namespace nla::extract
