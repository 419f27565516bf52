// Everything a loaded tokenizer.json holds, in the form encode/decode use, and the loader
// that validates the file into it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "added_tokens.hpp"
#include "bpe.hpp"
#include "normalizer.hpp"
#include "pre_tokenizer.hpp"

namespace nla::tokenizer::detail {

struct TokenizerModel {
  Normalizer normalizer;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  Bpe bpe;
  bool ignore_merges = false;        // model.ignore_merges: a word in the vocabulary is one token
  AddedTokenMatcher raw_added;         // added tokens with normalized=false: matched in the raw text
  AddedTokenMatcher normalized_added;  // normalized=true: matched in the normalized text

  std::unordered_map<std::string, TokenId> token_ids;  // vocabulary and added tokens
  std::vector<std::string> id_tokens;                  // id -> entry ("" where no token has the id)
  enum : uint8_t { k_present = 1, k_added = 2, k_special = 4 };
  std::vector<uint8_t> id_flags;
  // What the byte-level decoder makes of each id, before the final lossy UTF-8 step.
  std::string decoded_bytes;
  std::vector<uint32_t> decoded_offsets;  // id -> [offsets[id], offsets[id+1])
};

// Parses and validates `json_text` (the contents of `path`). InputError with one line,
// "<path>: <field>: expected ...", when the file is not a supported tokenizer.
void load_tokenizer_json(const std::string& path, std::string_view json_text, TokenizerModel& model);

}  // namespace nla::tokenizer::detail
