// Extraction: corpus -> activation store (DESIGN section 4), the first stage of every run.
//
// Determinism. Which positions of a document are sampled depends only on (seed, document
// id); which documents share a forward batch depends only on the corpus order (batch b
// holds kept corpus documents [b*G, (b+1)*G), G = batch_docs) and batch b runs on rank
// b % world_size. So the store is the same file content whatever the number of ranks,
// and a resumed run writes exactly what an uninterrupted one would.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "nla/tokenizer/tokenizer.hpp"

namespace nla::extract {

struct ExtractOptions {
  std::string model;                 // checkpoint directory
  std::string tokenizer;             // "" = <model>/tokenizer.json
  std::string corpus;                // files, directories, globs (comma-separated); "" = the demo corpus
  std::string text_field = "text";
  std::string id_field = "id";
  std::string source_field = "source";
  std::string layers = "all";        // "20", "0-27", "all", "1,5,9-11"
  int64_t positions_per_doc = 10;
  int64_t min_position = 50;
  int64_t max_tokens = 2048;         // documents are truncated to this many tokens
  int64_t max_docs = -1;             // corpus documents to read (< 0: all)
  int64_t doc_stride = 1;            // keep every doc_stride-th corpus document (a spread-out subsample)
  int64_t doc_offset = 0;            // ... starting at this one: offsets 0 and 1 give disjoint subsamples
  int64_t seed = 0;
  int64_t batch_docs = 8;            // documents per forward batch
  std::string device = "auto";       // auto | cpu | cuda | cuda:N: each rank its local GPU (nla/dist/device.hpp)
  std::string precision = "auto";    // the model's dtype (auto: bf16 on a GPU); stored activations are fp32
  std::string out = "acts.h5";
  bool overwrite = false;            // replace an existing complete store
  bool checksums = true;             // Fletcher32 per chunk of activations (a flipped bit fails the read)
  int64_t kill_after_batches = -1;   // testing: SIGKILL rank 0 after this many batches
};

struct ExtractSummary {
  int64_t documents = 0;   // in the store
  int64_t samples = 0;
  int64_t tokens = 0;      // through the model, this run, all ranks
  double seconds = 0;          // the whole run
  double forward_seconds = 0;  // in the model (rank 0)
  double write_seconds = 0;    // in collective store writes (rank 0)
  bool resumed = false;
};

// Collective over MPI_COMM_WORLD. `created_by` is recorded in the store. `announce` runs
// once every input is validated, before the long work (so bad input stays one line).
ExtractSummary run_extraction(const ExtractOptions& options, const std::string& created_by,
                              const std::function<void()>& announce = {});


// Positions of one document: up to `count` distinct positions in [min_position, n) that
// are not special tokens, drawn by a generator seeded from (seed, document id), sorted.
std::vector<int32_t> sample_positions(const std::vector<tokenizer::TokenId>& tokens, const tokenizer::Tokenizer& tok,
                                      int64_t count, int64_t min_position, uint64_t seed,
                                      const std::string& document_id);

}  // namespace nla::extract
