// Added tokens (<|endoftext|>, <|im_start|>, ...): found in the text before the split and
// emitted as whole tokens, with Hugging Face's AddedVocabulary semantics: leftmost-longest
// matching, single_word / lstrip / rstrip flags, `normalized` tokens matched in the
// normalized text and the others in the raw text.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "nla/tokenizer/tokenizer.hpp"

namespace nla::tokenizer::detail {

struct AddedToken {
  std::string content;
  TokenId id = -1;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
  bool special = false;
};

// A stretch of text: an added token (id >= 0) or text still to tokenize (id == -1).
struct Segment {
  uint32_t offset;
  uint32_t length;
  TokenId id;
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  // `patterns[i]` is what token i is matched as (its content, or its normalized content).
  AddedTokenMatcher(std::vector<AddedToken> tokens, std::vector<std::string> patterns);
  bool empty() const { return tokens_.empty(); }
  // Appends the segments of `text` in order; they cover it without gaps.
  void split(std::string_view text, std::vector<Segment>& out) const;

 private:
  // Longest token that matches at text[i], or -1.
  int match_at(std::string_view text, size_t i) const;

  std::vector<AddedToken> tokens_;
  std::vector<std::string> patterns_;
  std::array<std::vector<uint32_t>, 256> by_first_byte_;  // token indices, longest pattern first
  std::array<bool, 256> is_first_byte_{};
};

// Unicode \w as Rust's regex-syntax defines it (Alphabetic, marks, decimal digits,
// connector punctuation, join controls): decides single_word boundaries.
bool is_word_char(uint32_t cp);
// Rust's char::is_whitespace (Unicode White_Space): what lstrip/rstrip remove.
bool is_white_space(uint32_t cp);

}  // namespace nla::tokenizer::detail
