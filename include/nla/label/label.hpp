// `nla label`: activation store -> descriptions (/descriptions/<name> in the store or a
// copy). context and jsonl:FILE run on rank 0; av:DIR verbalizes with an AV checkpoint, the
// rows split over the ranks (rank 0 writes). The dataset records what made it (attributes
// created_by, labeler, failed).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "nla/dist/device.hpp"  // defines: Compute

namespace nla::label {

struct LabelOptions {
  std::string store;                // activation store (nla extract)
  std::string labeler = "context";  // context | jsonl:FILE | av:DIR
  std::string name = "gold";        // /descriptions/<name>
  std::string out;                  // "" = the input store itself; else a labelled copy
  std::string tokenizer;            // context: "" = the store's model's
  int context_tokens = 12;          // context: tokens of left context quoted
  std::string fields = "before,token,domain";  // context: the snippets written, in this order
  int layer = -1;                   // av: store layer (-1: the AV's critic.extraction_layer_index)
  double temperature = 0.0;         // av: 0 = greedy
  double top_p = 1.0;
  int64_t seed = 0;                 // av: row r is sampled with a seed from (seed, r)
  int64_t max_new_tokens = 150;     // av: unclosed answers are stored as ""
  int64_t batch = 32;               // av: sequences per generator call
  std::string device = "auto";      // av
  std::string precision = "auto";   // av
};

struct LabelHooks {
  // Once the inputs are checked (rank 0 prints the run header); av: given the compute the AV
  // runs with, which the header and the dataset's created_by record.
  std::function<void(const std::optional<dist::Compute>& compute)> announce;
  // The created_by JSON of the dataset.
  std::function<std::string(const std::optional<dist::Compute>& compute)> provenance;
};

// Collective over MPI_COMM_WORLD. InputError (one line, every rank) for bad options or inputs.
void run_label(const LabelOptions& options, const LabelHooks& hooks);

}  // namespace nla::label
