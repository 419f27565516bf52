// The texts of the steering commands (contrast sets, audit prompts) and how ranks share them.
//
// Texts are JSONL records read whole on every rank (they are small: prompts, not a corpus),
// so an input error is the same everywhere. Work is split in fixed global chunks of `batch`
// texts, chunk k on rank k % ranks: a text is always batched with the same others, so the
// batched arithmetic, and every result, is the same on any rank count.
#pragma once

#include <ATen/core/Tensor.h>
#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "nla/model/qwen2.hpp"
#include "nla/tokenizer/tokenizer.hpp"

namespace nla::steer {

// The first token's residual is an outlier in real Qwen2 models (the attention sink, tens of
// times the typical norm): medians and token means start at this position.
inline constexpr int64_t kFirstTypicalPosition = 1;

// The `text_field` of the records of a JSONL file (plain, gzip or zstd), in order, the first
// max_texts of them (< 0: all). InputError naming `option` and the file when it cannot be
// read or holds no text.
std::vector<std::string> read_texts(const std::string& path, const std::string& text_field, const std::string& option,
                                    int64_t max_texts = -1);

// Token ids of each text, truncated to its first max_tokens. InputError naming `option` for
// a text with no tokens.
std::vector<std::vector<int64_t>> tokenize_texts(const tokenizer::Tokenizer& tokenizer,
                                                 const std::vector<std::string>& texts, int64_t max_tokens,
                                                 const std::string& option);

// This rank's chunks: the item indices of chunks k = rank, rank + ranks, ... of `batch` items.
std::vector<std::vector<int64_t>> rank_chunks(int64_t items, int64_t batch, int rank, int ranks);

// The residual after block `layer` of each sequence (one right-padded forward over all of
// them, with `steering` applied): (n_i, C) float32 on the CPU per sequence.
std::vector<at::Tensor> layer_residuals(const model::Qwen2Model& net, const std::vector<std::vector<int64_t>>& tokens,
                                        int64_t layer, const std::vector<model::Steering>& steering = {});

// A sequence's residual rows (n, C) from `min_position` on; a sequence that short keeps its
// last row. The tokens token means and median norms are taken over.
at::Tensor typical_rows(const at::Tensor& residual, int64_t min_position);

// The median of every rank's `values` together (the same on any rank count), on every rank.
// Collective over `comm`.
double gathered_median(MPI_Comm comm, const std::vector<double>& values);

// The right-padded batch of `tokens` on `device`: ids (B, T) and mask (B, T).
model::ForwardInput right_padded(const std::vector<std::vector<int64_t>>& tokens, c10::Device device);

}  // namespace nla::steer
