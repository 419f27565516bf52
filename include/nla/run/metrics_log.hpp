// A run's JSON-lines log (metrics.jsonl, eval.jsonl): one record per line, each with the
// "step" it belongs to, written by rank 0 and flushed per line.
//
// Opening it is collective. A fresh run (resume_step nullopt) starts the file empty; a
// resumed run keeps the records of steps <= resume_step and redoes the later ones (a line
// cut short by a kill is dropped).
#pragma once

#include <mpi.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <fstream>
#include <optional>
#include <string>

namespace nla::run {

class MetricsLog {
 public:
  MetricsLog() = default;
  // Collective over comm; InputError (on every rank) when the file cannot be written.
  MetricsLog(std::string path, std::optional<int64_t> resume_step, MPI_Comm comm);

  void write(const nlohmann::json& record);  // rank 0 writes; the other ranks ignore it
  void flush();
  bool is_open() const { return !path_.empty(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::ofstream out_;  // open on rank 0 only
};

// Keeps the records of steps <= `step` of the file at `path`; a missing file stays missing.
// Rewrites the file atomically. Rank 0 only.
void truncate_metrics(const std::string& path, int64_t step);

}  // namespace nla::run
