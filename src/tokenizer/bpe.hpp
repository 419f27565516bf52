// Byte-level BPE on token ids: a word's bytes start as the 256 byte tokens and the pair of
// lowest merge rank (leftmost on ties) is merged until none is left, as tokenizers'
// Word::merge_all does. Pairs are looked up in an open-addressing table keyed by
// (left id, right id); finished words are kept in a per-thread word cache.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "nla/tokenizer/tokenizer.hpp"

namespace nla::tokenizer::detail {

struct Merge {
  TokenId left;
  TokenId right;
  TokenId result;
};

class Bpe {
 public:
  Bpe() = default;
  // `byte_ids[b]`: the id of the token of byte b. `merges` in rank order (rank = index).
  Bpe(std::array<TokenId, 256> byte_ids, const std::vector<Merge>& merges);

  // Appends the ids of one pre-tokenized word (raw bytes). `cache_owner` identifies the
  // tokenizer whose per-thread cache is used.
  void encode_word(std::string_view word, std::vector<TokenId>& out, uint64_t cache_owner) const;

  // Merges `symbols` in place (exposed for tests). `use_heap` picks the algorithm for long
  // words; both give the same result.
  void merge(std::vector<TokenId>& symbols, bool use_heap) const;

  struct PairRank {
    uint32_t rank;
    TokenId result;
  };
  // Rank and result of merging (left, right); rank UINT32_MAX when they do not merge.
  PairRank find(TokenId left, TokenId right) const {
    uint64_t key = pair_key(left, right);
    for (size_t slot = hash_slot(key);; slot = (slot + 1) & mask_) {
      const Entry& e = table_[slot];
      if (e.key == key) return {e.rank, e.result};
      if (e.key == k_empty) return {UINT32_MAX, -1};
    }
  }

 private:
  static constexpr uint64_t k_empty = ~uint64_t(0);
  static uint64_t pair_key(TokenId left, TokenId right) {
    return (uint64_t(uint32_t(left)) << 32) | uint32_t(right);
  }
  size_t hash_slot(uint64_t key) const { return size_t((key * 0x9E3779B97F4A7C15ull) >> shift_); }
  void merge_short(std::vector<TokenId>& symbols) const;
  void merge_long(std::vector<TokenId>& symbols) const;

  struct Entry {
    uint64_t key = k_empty;
    uint32_t rank = 0;
    TokenId result = -1;
  };
  std::array<TokenId, 256> byte_ids_{};
  std::vector<Entry> table_;
  size_t mask_ = 0;
  int shift_ = 64;
};

}  // namespace nla::tokenizer::detail
