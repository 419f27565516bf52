// Steering vectors: `nla steer-vector` (the contrastive mean difference of a layer's
// activations over two sets of texts) and the file it writes, which `nla steer-audit` reads.
//
// The file is safetensors with one tensor, "vector" (F32 [d]), and metadata: format
// "nla-steering-vector", layer, model, token (last | mean), n_positive, n_negative, norm,
// median_norm (the layer's median activation norm over the texts' tokens from position 1),
// relative_norm = norm / median_norm, provenance (JSON). Any safetensors file with a
// "vector" [d] (or a single 1-D tensor) is accepted as a vector too.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "nla/dist/device.hpp"

namespace nla::steer {

inline constexpr const char* kSteeringVectorFormat = "nla-steering-vector";

struct SteerVectorOptions {
  std::string model;            // checkpoint directory
  std::string tokenizer;        // "" = the model's
  std::string positive;         // JSONL texts with the concept
  std::string negative;         // JSONL texts without it
  std::string text_field = "text";
  int64_t layer = -1;           // residual after this block
  std::string token = "last";   // last: each text's last token; mean: the mean over its tokens from min-position
  int64_t min_position = 1;     // first token of a mean (and of the median norm); a text shorter keeps its last
  int64_t max_tokens = 512;     // texts are truncated to their first N tokens
  int64_t max_texts = -1;       // the first N texts of each file (-1: all)
  int64_t batch = 8;            // texts per forward
  std::string out;              // vector.safetensors
  bool overwrite = false;       // replace an existing `out`
};

struct SteerVectorSummary {
  int64_t n_positive = 0, n_negative = 0;
  double norm = 0, median_norm = 0;
};

// Collective over MPI_COMM_WORLD: the ranks split the texts (fixed chunks, so the vector is
// the same on any rank count); rank 0 writes `out`. `announce` runs once the inputs are
// validated.
SteerVectorSummary run_steer_vector(const SteerVectorOptions& options, const dist::Compute& compute,
                                    const std::string& provenance_json, const std::function<void()>& announce = {});

struct SteeringVector {
  at::Tensor vector;  // (d) float32, finite, norm > 0
  std::map<std::string, std::string> metadata;
  int64_t layer() const;  // metadata "layer", -1 when absent
};

// Reads a steering vector file; InputError naming `option` and the file for a missing file, a
// file that is not safetensors, no vector, a size other than hidden_size, a non-finite
// element or a zero vector.
SteeringVector read_steering_vector(const std::string& path, int64_t hidden_size, const std::string& option);

}  // namespace nla::steer
