// The pre-tokenizer split: a regex from tokenizer.json (Split, behavior Isolated) cuts the
// normalized text into pieces; every byte of the text lands in exactly one piece.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace nla::tokenizer::detail {

struct Piece {
  uint32_t offset;
  uint32_t length;
};

class PreTokenizer {
 public:
  // `pattern` is the tokenizer.json regex (Oniguruma syntax as Hugging Face uses it).
  // `where` names the field in errors ("tok.json: pre_tokenizer.pretokenizers[0].pattern.Regex").
  PreTokenizer(const std::string& pattern, const std::string& where);
  ~PreTokenizer();
  PreTokenizer(const PreTokenizer&) = delete;
  PreTokenizer& operator=(const PreTokenizer&) = delete;

  // Appends the pieces of `text` (valid UTF-8) to `pieces` (offsets relative to text).
  void split(std::string_view text, std::vector<Piece>& pieces) const;

  const std::string& pattern() const { return pattern_; }

  struct Compiled;  // one PCRE2 code (pre_tokenizer.cpp)

 private:
  std::string pattern_;
  // `plain` has PCRE2's own \p{L}/\p{N}; `extended` adds the newer code points, at about
  // half the speed, so it only runs on text that holds one of them.
  std::unique_ptr<Compiled> plain_;
  std::unique_ptr<Compiled> extended_;
};

// The tokenizer.json regex rewritten for PCRE2: \s and \S become Unicode White_Space
// classes as Oniguruma and Rust define them (PCRE2's own \s also matches U+180E); with
// `extend_classes`, \p{L} / \p{N} gain the code points of Unicode versions newer than
// PCRE2's tables (unicode_delta.inc).
std::string translate_pattern(const std::string& pattern, bool extend_classes);

// Whether `text` (valid UTF-8) holds one of those newer letters or numbers.
bool has_extended_code_point(std::string_view text);

// The regex of ByteLevel(use_regex=true), GPT-2's split.
extern const char* const k_gpt2_pattern;

}  // namespace nla::tokenizer::detail
