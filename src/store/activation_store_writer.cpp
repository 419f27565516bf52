// Collective writer of the activation store: layout by rank 0, rows by every rank over
// MPI-IO, per-document completion flags for resume, rename on finish.
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <numeric>

#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/core/world.hpp"
#include "nla/store/activation_store.hpp"

namespace nla::store {

namespace {

// Rows per chunk: about 1 MiB of float32 per chunk, at least one row.
hsize_t rows_per_chunk(int64_t hidden_size, int64_t n_rows) {
  hsize_t rows = std::max<int64_t>(1, (1 << 20) / (4 * std::max<int64_t>(1, hidden_size)));
  return std::min<hsize_t>(rows, std::max<int64_t>(1, n_rows));
}

std::string layers_json(const std::vector<int>& layers) { return nlohmann::json(layers).dump(); }
std::string skipped_json(const std::map<std::string, int64_t>& skipped) { return nlohmann::json(skipped).dump(); }

void write_header(hid_t file, const StoreHeader& header) {
  write_attribute(file, "format", std::string(kStoreFormat));
  write_attribute(file, "version", kStoreVersion);
  write_attribute(file, "model", header.model);
  write_attribute(file, "model_config", header.model_config);
  write_attribute(file, "tokenizer_sha256", header.tokenizer_sha256);
  write_attribute(file, "created_by", header.created_by);
  write_attribute(file, "device", header.device);
  write_attribute(file, "device_name", header.device_name);
  write_attribute(file, "precision", header.precision);
  write_attribute(file, "seed", header.seed);
  write_attribute(file, "positions_per_doc", header.positions_per_doc);
  write_attribute(file, "hidden_size", header.hidden_size);
  write_attribute(file, "layers", layers_json(header.layers));
  write_attribute(file, "skipped", skipped_json(header.skipped));
  write_attribute(file, "checksums", int64_t{header.checksums ? 1 : 0});
  write_attribute(file, "complete", int64_t{0});
}

// What must agree for a resumed run to continue a partial file (created_by and the device
// may differ: the same extraction may be resumed with other launcher or logging options, or
// on other hardware; the precision may not, or the rows would mix fp32 and bf16 forwards).
std::string resume_key(const StoreHeader& header) {
  return nlohmann::json{{"model", header.model},
                        {"model_config", header.model_config},
                        {"tokenizer_sha256", header.tokenizer_sha256},
                        {"seed", header.seed},
                        {"positions_per_doc", header.positions_per_doc},
                        {"hidden_size", header.hidden_size},
                        {"layers", header.layers},
                        {"skipped", header.skipped},
                        {"precision", header.precision}}
      .dump();
}

// Documents travel to rank 0 as msgpack.
std::vector<char> to_bytes(const std::vector<StoreDocument>& documents) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& document : documents)
    list.push_back({document.index, document.id, document.source, document.text, document.positions,
                    document.tokens});
  auto bytes = nlohmann::json::to_msgpack(list);
  return std::vector<char>(bytes.begin(), bytes.end());
}

std::vector<StoreDocument> from_bytes(const char* data, size_t size) {
  auto list = nlohmann::json::from_msgpack(std::vector<uint8_t>(data, data + size));
  std::vector<StoreDocument> documents;
  for (const auto& item : list) {
    StoreDocument document;
    document.index = item[0];
    document.id = item[1];
    document.source = item[2];
    document.text = item[3];
    document.positions = item[4].get<std::vector<int32_t>>();
    document.tokens = item[5].get<std::vector<int32_t>>();
    documents.push_back(std::move(document));
  }
  return documents;
}

// Gathers variable-size byte buffers to rank 0 of `comm`.
std::vector<std::vector<char>> gather_bytes(const std::vector<char>& mine, MPI_Comm comm) {
  int rank = 0, size = 1;
  NLA_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  NLA_CHECK_MPI(MPI_Comm_size(comm, &size));
  // Sizes as int64 (documents can exceed 2 GiB in total); transfer in pieces below 1 GiB.
  int64_t my_size = static_cast<int64_t>(mine.size());
  std::vector<int64_t> sizes(size);
  NLA_CHECK_MPI(MPI_Gather(&my_size, 1, MPI_INT64_T, sizes.data(), 1, MPI_INT64_T, 0, comm));
  std::vector<std::vector<char>> all(rank == 0 ? size : 0);
  constexpr int64_t kPiece = 1 << 30;
  if (rank == 0) {
    all[0] = mine;
    for (int source = 1; source < size; ++source) {
      all[source].resize(sizes[source]);
      for (int64_t offset = 0; offset < sizes[source]; offset += kPiece) {
        int count = static_cast<int>(std::min(kPiece, sizes[source] - offset));
        NLA_CHECK_MPI(MPI_Recv(all[source].data() + offset, count, MPI_CHAR, source, 7, comm, MPI_STATUS_IGNORE));
      }
    }
  } else {
    for (int64_t offset = 0; offset < my_size; offset += kPiece) {
      int count = static_cast<int>(std::min(kPiece, my_size - offset));
      NLA_CHECK_MPI(MPI_Send(mine.data() + offset, count, MPI_CHAR, 0, 7, comm));
    }
  }
  return all;
}

}  // namespace

ActivationStoreWriter::ActivationStoreWriter(std::string path, StoreHeader header,
                                             std::vector<StoreDocument> my_documents, MPI_Comm comm)
    : path_(std::move(path)), partial_path_(path_ + ".partial"), header_(std::move(header)), comm_(comm) {
  silence_hdf5_errors();
  NLA_CHECK(!header_.layers.empty(), "a store needs at least one layer");
  NLA_CHECK(header_.hidden_size > 0, "hidden_size must be positive");
  std::sort(my_documents.begin(), my_documents.end(),
            [](const StoreDocument& a, const StoreDocument& b) { return a.index < b.index; });

  // Global row offsets from every rank's (index, count) pairs.
  std::vector<int64_t> mine;
  for (const auto& document : my_documents) {
    NLA_CHECK(document.positions.size() == document.tokens.size(), "document ", document.index,
              ": positions and tokens differ in length");
    mine.push_back(document.index);
    mine.push_back(static_cast<int64_t>(document.positions.size()));
  }
  int size = 1;
  NLA_CHECK_MPI(MPI_Comm_size(comm_, &size));
  int my_count = static_cast<int>(mine.size());
  std::vector<int> counts(size), displacements(size);
  NLA_CHECK_MPI(MPI_Allgather(&my_count, 1, MPI_INT, counts.data(), 1, MPI_INT, comm_));
  std::exclusive_scan(counts.begin(), counts.end(), displacements.begin(), 0);
  std::vector<int64_t> all(std::accumulate(counts.begin(), counts.end(), 0));
  NLA_CHECK_MPI(MPI_Allgatherv(mine.data(), my_count, MPI_INT64_T, all.data(), counts.data(), displacements.data(),
                               MPI_INT64_T, comm_));
  n_documents_ = static_cast<int64_t>(all.size() / 2);
  std::vector<int64_t> rows_of(n_documents_, -1);
  for (size_t i = 0; i < all.size(); i += 2) {
    int64_t index = all[i];
    NLA_CHECK(index >= 0 && index < n_documents_ && rows_of[index] < 0, "document index ", index,
              " is out of range or held by two ranks");
    rows_of[index] = all[i + 1];
  }
  std::vector<int64_t> first_row(n_documents_ + 1, 0);
  for (int64_t index = 0; index < n_documents_; ++index) first_row[index + 1] = first_row[index] + rows_of[index];
  n_samples_ = first_row[n_documents_];
  for (const auto& document : my_documents) {
    row_of_document_[document.index] = first_row[document.index];
    count_of_document_[document.index] = static_cast<int64_t>(document.positions.size());
  }

  // Resume when a partial file of the same extraction exists; else lay out a new one.
  int partial_exists = 0;
  run_on_root(comm_, [&] {
    partial_exists = fs::exists(partial_path_) ? 1 : 0;
    if (!partial_exists) return;
    H5Handle file(H5Fopen(partial_path_.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
    if (!file.valid()) {
      // Killed before the layout was complete: nothing to keep.
      fs::remove(partial_path_);
      partial_exists = 0;
      return;
    }
    StoreHeader existing = read_store_header(file, partial_path_);
    NLA_CHECK_INPUT(resume_key(existing) == resume_key(header_), partial_path_,
                    ": a partial store of a different extraction (model, layers, seed, positions, corpus or precision "
                    "differ); remove it or use another --out");
    NLA_CHECK_INPUT(read_int_attribute(file, "n_samples_planned") == n_samples_, partial_path_,
                    ": attribute 'n_samples_planned': expected ", n_samples_, " for this corpus");
  });
  NLA_CHECK_MPI(MPI_Bcast(&partial_exists, 1, MPI_INT, 0, comm_));
  resumed_ = partial_exists != 0;
  if (!resumed_) create_layout(my_documents);
  open_parallel();

  // Documents already finished (by an earlier run) are not recomputed.
  std::vector<uint8_t> done(n_documents_, 0);
  if (n_documents_ > 0)
    NLA_CHECK_H5(H5Dread(done_dataset_, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, done.data()));
  for (auto& document : my_documents)
    if (!done[document.index]) pending_.push_back(std::move(document));
}

ActivationStoreWriter::~ActivationStoreWriter() {
  if (!file_.valid()) return;  // finished, or never opened
  if (!failure_agreed_) {
    // Unwinding from an error on this rank alone: closing is collective and would wait for
    // ranks that are not coming, so the handles are left to the job's abort.
    for (auto& dataset : layer_datasets_) dataset.release();
    done_dataset_.release();
    file_.release();
    return;
  }
  // A write failure every rank agreed on: all close together. A close that fails again (the
  // file cannot reach its size) is not retried by HDF5 at MPI_Finalize, where it used to crash.
  layer_datasets_.clear();
  done_dataset_.close();
  if (H5Fclose(file_.release()) < 0) hdf5_error_text();  // clears the stack; the agreed error is in flight
}

void ActivationStoreWriter::create_layout(const std::vector<StoreDocument>& my_documents) {
  auto gathered = gather_bytes(to_bytes(my_documents), comm_);
  run_on_root(comm_, [&] {
    std::vector<StoreDocument> documents;
    for (const auto& bytes : gathered) {
      auto part = from_bytes(bytes.data(), bytes.size());
      std::move(part.begin(), part.end(), std::back_inserter(documents));
    }
    std::sort(documents.begin(), documents.end(),
              [](const StoreDocument& a, const StoreDocument& b) { return a.index < b.index; });

    // The rows need this much space (at once with checksums, which fill the chunks at layout;
    // as they are written without): checked here, before any work, rather than found missing
    // hours into it.
    require_free_space(static_cast<uint64_t>(n_samples_) * header_.layers.size() * header_.hidden_size * sizeof(float));
    fs::remove(partial_path_);
    try {
      H5Handle file(H5Fcreate(partial_path_.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT));
      NLA_CHECK_INPUT(file.valid(), partial_path_, ": cannot be created: ", hdf5_error_text());
      write_header(file, header_);
      write_attribute(file, "n_samples_planned", n_samples_);

      std::vector<std::string> texts, ids, sources;
      std::vector<int64_t> sample_doc;
      std::vector<int32_t> sample_position, sample_token;
      for (const auto& document : documents) {
        texts.push_back(document.text);
        ids.push_back(document.id);
        sources.push_back(document.source);
        for (size_t k = 0; k < document.positions.size(); ++k) {
          sample_doc.push_back(document.index);
          sample_position.push_back(document.positions[k]);
          sample_token.push_back(document.tokens[k]);
        }
      }
      write_string_dataset(file, "docs/text", texts);
      write_string_dataset(file, "docs/id", ids);
      write_string_dataset(file, "docs/source", sources);
      write_vector_dataset(file, "samples/doc", sample_doc);
      write_vector_dataset(file, "samples/position", sample_position);
      write_vector_dataset(file, "samples/token", sample_token);
      write_vector_dataset(file, "progress/doc_done", std::vector<uint8_t>(documents.size(), 0));

      // Activation datasets: space allocated now (parallel writes need it). Without checksums
      // never filled with zeros (rows are written exactly once).
      hsize_t dims[2] = {static_cast<hsize_t>(n_samples_), static_cast<hsize_t>(header_.hidden_size)};
      H5Handle space(NLA_CHECK_H5(H5Screate_simple(2, dims, nullptr)));
      H5Handle properties(NLA_CHECK_H5(H5Pcreate(H5P_DATASET_CREATE)));
      // With checksums, a chunk is read, checked and rewritten whenever a round writes part of
      // it, so every chunk must hold valid data (zeros, checksummed) from the start: filled
      // at creation. Measured with `nla bench extract --preset small` (2 ranks, 268 MB): whole
      // extraction 875 tokens/s without, 933 with (medians of 3; the noise is larger).
      NLA_CHECK_H5(H5Pset_alloc_time(properties, H5D_ALLOC_TIME_EARLY));
      NLA_CHECK_H5(H5Pset_fill_time(properties, header_.checksums ? H5D_FILL_TIME_ALLOC : H5D_FILL_TIME_NEVER));
      if (n_samples_ > 0) {
        hsize_t chunk[2] = {rows_per_chunk(header_.hidden_size, n_samples_), dims[1]};
        NLA_CHECK_H5(H5Pset_chunk(properties, 2, chunk));
        if (header_.checksums) NLA_CHECK_H5(H5Pset_fletcher32(properties));
      }
      H5Handle link_properties(NLA_CHECK_H5(H5Pcreate(H5P_LINK_CREATE)));
      NLA_CHECK_H5(H5Pset_create_intermediate_group(link_properties, 1));
      for (int layer : header_.layers) {
        std::string name = "layers/" + std::to_string(layer) + "/acts";
        H5Handle dataset(NLA_CHECK_H5(
            H5Dcreate2(file, name.c_str(), H5T_IEEE_F32LE, space, link_properties, properties, H5P_DEFAULT)));
      }
      NLA_CHECK_H5(H5Fflush(file, H5F_SCOPE_GLOBAL));
      // Closing sets the file to its full size: checked, as it fails when the file cannot grow.
      errno = 0;
      if (H5Fclose(file.release()) < 0) NLA_THROW(write_failure_text("the layout"));
    } catch (const InputError&) {
      ::unlink(partial_path_.c_str());
      throw;
    } catch (const Error& error) {
      // Nothing is kept of a layout that could not be written, and no work has started: an
      // output that cannot be written (exit 2), named, with the system's cause.
      const int cause = errno;
      ::unlink(partial_path_.c_str());
      std::string text = error.what();
      if (auto at = text.find(" failed: "); text.rfind(partial_path_, 0) != 0 && at != std::string::npos)
        text = partial_path_ + ": cannot be written: " + (cause != 0 ? std::strerror(cause) : text.substr(at + 9));
      throw InputError(text, __FILE__, __LINE__);
    }
  });
}

void ActivationStoreWriter::require_free_space(uint64_t bytes) const {
  struct statvfs filesystem {};
  const std::string directory = fs::parent(partial_path_).empty() ? "." : fs::parent(partial_path_);
  if (statvfs(directory.c_str(), &filesystem) != 0) return;  // unknown: the writes will tell
  const uint64_t available = static_cast<uint64_t>(filesystem.f_bavail) * filesystem.f_frsize;
  auto gigabytes = [](uint64_t n) { return str(std::fixed, std::setprecision(2), n / 1e9, " GB"); };
  NLA_CHECK_INPUT(available >= bytes, partial_path_, ": the activations need ", gigabytes(bytes),
                  " and the filesystem has ", gigabytes(available), " free (free space, or choose another --out)");
}

void ActivationStoreWriter::open_parallel() {
  H5Handle access(NLA_CHECK_H5(H5Pcreate(H5P_FILE_ACCESS)));
  NLA_CHECK_H5(H5Pset_fapl_mpio(access, comm_, MPI_INFO_NULL));
  NLA_CHECK_H5(H5Pset_all_coll_metadata_ops(access, 1));
  NLA_CHECK_H5(H5Pset_coll_metadata_write(access, 1));
  file_ = H5Handle(H5Fopen(partial_path_.c_str(), H5F_ACC_RDWR, access));
  NLA_CHECK_INPUT(file_.valid(), partial_path_, ": cannot be opened for writing (MPI-IO): ", hdf5_error_text());
  for (int layer : header_.layers) {
    std::string name = "layers/" + std::to_string(layer) + "/acts";
    layer_datasets_.emplace_back(NLA_CHECK_H5(H5Dopen2(file_, name.c_str(), H5P_DEFAULT)));
  }
  done_dataset_ = H5Handle(NLA_CHECK_H5(H5Dopen2(file_, "progress/doc_done", H5P_DEFAULT)));
}

void ActivationStoreWriter::write_round(const std::vector<int64_t>& documents,
                                        const std::vector<const float*>& layer_rows) {
  NLA_CHECK(layer_rows.size() == header_.layers.size() || documents.empty(), "write_round: ", layer_rows.size(),
            " row buffers for ", header_.layers.size(), " layers");
  H5Handle transfer(NLA_CHECK_H5(H5Pcreate(H5P_DATASET_XFER)));
  NLA_CHECK_H5(H5Pset_dxpl_mpio(transfer, H5FD_MPIO_COLLECTIVE));
  const hsize_t width = static_cast<hsize_t>(header_.hidden_size);
  std::string write_failure;

  // This rank's rows in the file: one hyperslab per document.
  hsize_t n_rows = 0;
  std::vector<std::pair<hsize_t, hsize_t>> blocks;  // (first row, rows)
  for (int64_t document : documents) {
    auto row = row_of_document_.find(document);
    NLA_CHECK(row != row_of_document_.end(), "document ", document, " is not one of this rank's");
    hsize_t count = count_of_document_.at(document);
    if (count) blocks.emplace_back(row->second, count);
    n_rows += count;
  }

  for (size_t k = 0; k < layer_datasets_.size(); ++k) {
    H5Handle file_space(NLA_CHECK_H5(H5Dget_space(layer_datasets_[k])));
    NLA_CHECK_H5(H5Sselect_none(file_space));
    for (auto [first, count] : blocks) {
      hsize_t start[2] = {first, 0}, extent[2] = {count, width};
      NLA_CHECK_H5(H5Sselect_hyperslab(file_space, H5S_SELECT_OR, start, nullptr, extent, nullptr));
    }
    hsize_t memory_dims[2] = {std::max<hsize_t>(n_rows, 1), width};
    H5Handle memory_space(NLA_CHECK_H5(H5Screate_simple(2, memory_dims, nullptr)));
    if (n_rows == 0) NLA_CHECK_H5(H5Sselect_none(memory_space));
    const float* data = n_rows ? layer_rows[k] : nullptr;
    // Every rank makes every collective write, so that one rank's failure cannot leave the
    // others waiting; the first failure is kept and agreed on below.
    errno = 0;
    if (H5Dwrite(layer_datasets_[k], H5T_NATIVE_FLOAT, memory_space, file_space, transfer, data) < 0 &&
        write_failure.empty())
      write_failure = write_failure_text("layer " + std::to_string(header_.layers[k]));
  }
  agree_on_write_failure(write_failure);

  // Then the completion flags of these documents; a kill before this line redoes them.
  H5Handle done_space(NLA_CHECK_H5(H5Dget_space(done_dataset_)));
  NLA_CHECK_H5(H5Sselect_none(done_space));
  for (int64_t document : documents) {
    hsize_t start = document, count = 1;
    NLA_CHECK_H5(H5Sselect_hyperslab(done_space, H5S_SELECT_OR, &start, nullptr, &count, nullptr));
  }
  hsize_t flag_count = std::max<hsize_t>(documents.size(), 1);
  H5Handle flag_space(NLA_CHECK_H5(H5Screate_simple(1, &flag_count, nullptr)));
  if (documents.empty()) NLA_CHECK_H5(H5Sselect_none(flag_space));
  std::vector<uint8_t> ones(flag_count, 1);
  // Hyperslab unions are written in file order; the values are all 1, so order is moot.
  errno = 0;
  if (H5Dwrite(done_dataset_, H5T_NATIVE_UINT8, flag_space, done_space, transfer, ones.data()) < 0)
    write_failure = write_failure_text("the completion flags");
  errno = 0;
  if (H5Fflush(file_, H5F_SCOPE_GLOBAL) < 0 && write_failure.empty()) write_failure = write_failure_text("a flush");
  agree_on_write_failure(write_failure);
}

std::string ActivationStoreWriter::write_failure_text(const std::string& what) const {
  // The cause as the system gave it (errno of the failed write: "No space left on device",
  // "File too large", "Disk quota exceeded"), else HDF5's innermost message.
  const int cause = errno;
  std::string hdf5_text = hdf5_error_text();
  return partial_path_ + ": writing " + what + " failed: " + (cause != 0 ? std::strerror(cause) : hdf5_text);
}

void ActivationStoreWriter::agree_on_write_failure(const std::string& failure) {
  failure_agreed_ = true;  // stays set only when the call below throws, which it does on every rank
  run_on_every_rank(comm_, [&] {
    if (failure.empty()) return;
    NLA_THROW(failure, "; the documents written before are kept: free space (or fix the cause) and run the same "
                       "command again to resume");
  });
  failure_agreed_ = false;
}

void ActivationStoreWriter::finish() {
  // Closing is collective and checked here (the handles' destructors would ignore errors).
  for (auto& dataset : layer_datasets_) NLA_CHECK_H5(H5Dclose(dataset.release()));
  layer_datasets_.clear();
  NLA_CHECK_H5(H5Dclose(done_dataset_.release()));
  NLA_CHECK_H5(H5Fclose(file_.release()));
  run_on_root(comm_, [&] {
    H5Handle serial(NLA_CHECK_H5(H5Fopen(partial_path_.c_str(), H5F_ACC_RDWR, H5P_DEFAULT)));
    write_attribute(serial, "complete", int64_t{1});
    serial.close();
    fs::rename(partial_path_, path_);
  });
}

}  // namespace nla::store
