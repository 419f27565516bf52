// Store rows as a LibTorch tensor, for the stages that compute on them (train, grpo, eval).
// Header-only: nla_store reads HDF5 without LibTorch; the libraries that include this header
// link LibTorch already.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "nla/store/activation_store.hpp"

namespace nla::store {

// Rows `rows` (in that order) of `layer` as an (N, d) fp32 CPU tensor owning its memory.
inline at::Tensor read_rows_tensor(const ActivationStore& store, int layer, const std::vector<int64_t>& rows) {
  std::vector<float> values = store.read_rows(layer, rows);  // N x d, row-major
  return at::from_blob(values.data(), {static_cast<int64_t>(rows.size()), store.hidden_size()}, at::kFloat).clone();
}

}  // namespace nla::store
