// The activation store: one HDF5 file per extraction (DESIGN section 4).
//
//   /                     attrs: format="nla-activations", version, model, model_config,
//                                tokenizer_sha256, seed, positions_per_doc, created_by,
//                                device, device_name, precision (optional: newer stores),
//                                hidden_size, layers (JSON list), skipped (JSON counts),
//                                complete (1 once every row is written)
//   /docs/text, /docs/id, /docs/source     vlen UTF-8 [n_docs]
//   /samples/doc int64, /samples/position int32, /samples/token int32   [n]
//   /layers/<l>/acts      float32 [n, d], chunked by rows
//   /progress/doc_done    uint8 [n_docs]  (resume bookkeeping)
//   /descriptions/<name>  vlen UTF-8 [n]  (optional)
//
// Rows are ordered by document index, then by position within the document, so the
// file does not depend on the number of ranks or on batching. The writer is collective:
// rank 0 lays the file out (serially: parallel HDF5 cannot write variable-length strings),
// then every rank writes its documents' rows through MPI-IO with collective transfers
// and collective metadata. While incomplete the file is "<path>.partial"; finish()
// renames it, so a file at <path> is always complete.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nla/store/hdf5_util.hpp"

namespace nla::store {

inline constexpr const char* kStoreFormat = "nla-activations";
inline constexpr int64_t kStoreVersion = 1;

// Root attributes that describe how the store was made.
struct StoreHeader {
  std::string model;             // path or id
  std::string model_config;      // config.json text
  std::string tokenizer_sha256;
  std::string created_by;        // nla version + command line
  std::string device;            // what extraction ran on (rank 0's): "cpu" | "cuda:0"; "" in older stores
  std::string device_name;       // the GPU's name; "" on the CPU
  std::string precision;         // the model's dtype: "fp32" | "bf16" (activations are stored fp32)
  int64_t seed = 0;
  int64_t positions_per_doc = 0;
  int64_t hidden_size = 0;
  std::vector<int> layers;       // layer l = output of block l
  std::map<std::string, int64_t> skipped;  // documents skipped, per reason
  // Fletcher32 checksum per chunk of every layer's rows: a flipped bit is an error on read
  // instead of a silently changed activation. false in stores written before (attribute absent).
  bool checksums = true;
};

// One document of the store with its sampled positions (same length vectors).
struct StoreDocument {
  int64_t index = 0;             // global document index (row order key)
  std::string id;
  std::string source;
  std::string text;
  std::vector<int32_t> positions;
  std::vector<int32_t> tokens;
};

class ActivationStoreWriter {
 public:
  // Collective over `comm`. `my_documents` are this rank's documents (any subset; the union
  // over ranks must hold each index once, and indices must be 0..n_docs-1). If
  // "<path>.partial" exists with the same header, it is reopened and finished documents
  // are kept (resume); a different header is an InputError.
  ActivationStoreWriter(std::string path, StoreHeader header, std::vector<StoreDocument> my_documents,
                        MPI_Comm comm);
  ~ActivationStoreWriter();
  ActivationStoreWriter(const ActivationStoreWriter&) = delete;
  ActivationStoreWriter& operator=(const ActivationStoreWriter&) = delete;

  // This rank's documents that still need activations (all of them on a fresh start).
  const std::vector<StoreDocument>& pending_documents() const { return pending_; }
  int64_t n_samples() const { return n_samples_; }
  int64_t n_documents() const { return n_documents_; }
  bool resumed() const { return resumed_; }

  // Collective: every rank calls it the same number of times (a rank with nothing left
  // passes empty `documents`). `layer_rows[k]` holds, for layers[k], the rows of the given
  // documents in that order: sum(len(positions)) x hidden_size floats.
  void write_round(const std::vector<int64_t>& documents, const std::vector<const float*>& layer_rows);

  // Collective: marks the file complete and renames it to <path>.
  void finish();

 private:
  void create_layout(const std::vector<StoreDocument>& my_documents);
  void open_parallel();
  // InputError naming the file when its filesystem has less than `bytes` free.
  void require_free_space(uint64_t bytes) const;
  // "<partial>: writing <what> failed: <cause>", read from errno and HDF5's stack.
  std::string write_failure_text(const std::string& what) const;
  // Collective: when any rank's write failed, every rank throws the lowest rank's error
  // (exit 1, one line); the completion flags of the failed round are then never written.
  void agree_on_write_failure(const std::string& failure);

  std::string path_;
  std::string partial_path_;
  StoreHeader header_;
  MPI_Comm comm_;
  std::vector<StoreDocument> pending_;
  std::map<int64_t, int64_t> row_of_document_;   // my documents -> first row
  std::map<int64_t, int64_t> count_of_document_; // my documents -> rows
  int64_t n_samples_ = 0;
  int64_t n_documents_ = 0;
  bool resumed_ = false;
  bool failure_agreed_ = false;  // a write failed and every rank is unwinding from it
  H5Handle file_;
  std::vector<H5Handle> layer_datasets_;
  H5Handle done_dataset_;
};

// Read access from any rank (no collectives): random rows, batches, documents.
// Index of the first non-finite value of values[0, count), or -1: the scan every read does.
int64_t first_non_finite(const float* values, size_t count);

class ActivationStore {
 public:
  // InputError naming the file when it is not a complete nla activation store.
  explicit ActivationStore(const std::string& path);

  const std::string& path() const { return path_; }
  const StoreHeader& header() const { return header_; }
  int64_t n_samples() const { return static_cast<int64_t>(sample_doc_.size()); }
  int64_t n_documents() const { return n_documents_; }
  int64_t hidden_size() const { return header_.hidden_size; }
  const std::vector<int>& layers() const { return header_.layers; }
  bool has_layer(int layer) const;

  int64_t sample_document(int64_t row) const { return sample_doc_.at(row); }
  int32_t sample_position(int64_t row) const { return sample_position_.at(row); }
  int32_t sample_token(int64_t row) const { return sample_token_.at(row); }
  std::string document_text(int64_t document) const;
  std::string document_source(int64_t document) const;
  std::string document_id(int64_t document) const;

  // Rows [start, start + count) of a layer, row-major (count x hidden_size). Both reads check
  // every value finite (InputError naming the file, layer, row and dimension otherwise).
  std::vector<float> read_rows(int layer, int64_t start, int64_t count) const;
  // Any rows, in the order given (duplicates allowed).
  std::vector<float> read_rows(int layer, const std::vector<int64_t>& rows) const;

  bool has_descriptions(const std::string& name) const;
  std::vector<std::string> read_descriptions(const std::string& name) const;
  // Writes /descriptions/<name> (one per sample) into the store at `path`; replaces an
  // existing set of that name. Serial: call from one rank.
  static void write_descriptions(const std::string& path, const std::string& name,
                                 const std::vector<std::string>& descriptions);

 private:
  hid_t layer_dataset(int layer) const;
  // InputError: rows [begin, end) of a layer could not be read (damaged file, bad checksum).
  [[noreturn]] void unreadable_rows(int layer, int64_t begin, int64_t end) const;

  std::string path_;
  StoreHeader header_;
  H5Handle file_;
  std::map<int, H5Handle> layer_datasets_;
  H5Handle text_dataset_, source_dataset_, id_dataset_;
  int64_t n_documents_ = 0;
  std::vector<int64_t> sample_doc_;
  std::vector<int32_t> sample_position_;
  std::vector<int32_t> sample_token_;
};

// Reads the header attributes of an open store file (shared by reader and writer).
StoreHeader read_store_header(hid_t file, const std::string& path);

}  // namespace nla::store
