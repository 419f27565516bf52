// Added-token matching, following tokenizers' AddedVocabulary::find_matches
// (huggingface/tokenizers, tokenizers/src/tokenizer/added_vocabulary.rs).
#include "added_tokens.hpp"

#include <utf8proc.h>

#include <algorithm>

#include "utf8.hpp"

namespace nla::tokenizer::detail {

bool is_white_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

bool is_word_char(uint32_t cp) {
  if (cp < 0x80) return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || cp == '_';
  if (cp == 0x200C || cp == 0x200D) return true;  // Join_Control
  // Other_Alphabetic symbols (circled and squared letters).
  if ((cp >= 0x24B6 && cp <= 0x24E9) || (cp >= 0x1F130 && cp <= 0x1F149) || (cp >= 0x1F150 && cp <= 0x1F169) ||
      (cp >= 0x1F170 && cp <= 0x1F189))
    return true;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_PC:
      return true;
    default:
      return false;
  }
}

namespace {

// The code point that ends text[0, end) (valid UTF-8, end > 0).
uint32_t last_code_point(std::string_view text, size_t end) {
  size_t start = end - 1;
  while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
  uint32_t cp;
  decode_utf8(text, start, cp);
  return cp;
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(std::vector<AddedToken> tokens, std::vector<std::string> patterns)
    : tokens_(std::move(tokens)), patterns_(std::move(patterns)) {
  for (uint32_t i = 0; i < tokens_.size(); ++i) {
    if (patterns_[i].empty()) continue;  // an empty token never matches
    auto first = static_cast<unsigned char>(patterns_[i][0]);
    by_first_byte_[first].push_back(i);
    is_first_byte_[first] = true;
  }
  for (auto& list : by_first_byte_)
    std::stable_sort(list.begin(), list.end(),
                     [&](uint32_t a, uint32_t b) { return patterns_[a].size() > patterns_[b].size(); });
}

int AddedTokenMatcher::match_at(std::string_view text, size_t i) const {
  for (uint32_t index : by_first_byte_[static_cast<unsigned char>(text[i])]) {
    const std::string& pattern = patterns_[index];
    if (text.size() - i >= pattern.size() && text.compare(i, pattern.size(), pattern) == 0)
      return static_cast<int>(index);
  }
  return -1;
}

void AddedTokenMatcher::split(std::string_view text, std::vector<Segment>& out) const {
  const size_t n = text.size();
  size_t emitted = 0;  // end of the last segment pushed (HF's start_offset)
  size_t search = 0;   // where the next leftmost-longest search starts (the matcher's position)
  while (search < n) {
    size_t i = search;
    int index = -1;
    for (; i < n; ++i) {
      if (!is_first_byte_[static_cast<unsigned char>(text[i])]) continue;
      if ((index = match_at(text, i)) >= 0) break;
    }
    if (index < 0) break;
    const AddedToken& token = tokens_[index];
    size_t start = i, stop = i + patterns_[index].size();
    search = stop;
    if (token.single_word) {
      uint32_t cp;
      bool start_space = start == 0 || !is_word_char(last_code_point(text, start));
      bool stop_space = stop == n || (decode_utf8(text, stop, cp), !is_word_char(cp));
      if (!start_space || !stop_space) continue;  // inside a word: not this token
    }
    if (token.lstrip) {
      size_t new_start = start;
      while (new_start > 0) {
        size_t prev = new_start - 1;
        while (prev > 0 && (static_cast<unsigned char>(text[prev]) & 0xC0) == 0x80) --prev;
        uint32_t cp;
        decode_utf8(text, prev, cp);
        if (!is_white_space(cp)) break;
        new_start = prev;
      }
      start = std::max(new_start, emitted);  // spaces already taken by the previous token stay there
    }
    if (token.rstrip) {
      while (stop < n) {
        uint32_t cp;
        size_t length = decode_utf8(text, stop, cp);
        if (!is_white_space(cp)) break;
        stop += length;
      }
      search = stop;
    }
    if (emitted < start) out.push_back({uint32_t(emitted), uint32_t(start - emitted), -1});
    out.push_back({uint32_t(start), uint32_t(stop - start), token.id});
    emitted = stop;
  }
  if (emitted < n) out.push_back({uint32_t(emitted), uint32_t(n - emitted), -1});
}

}  // namespace nla::tokenizer::detail
