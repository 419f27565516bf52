// The Qwen2 pre-tokenizer split with PCRE2 (UTF + UCP, JIT compiled). The text is validated
// once by the caller; every match passes PCRE2_NO_UTF_CHECK (through pcre2_jit_match, which
// skips the check), else PCRE2 re-validates the whole subject at each match and the scan
// becomes quadratic.
//
// Qwen2's regex, as tokenizer.json spells it (pre_tokenizer.pretokenizers[0].pattern.Regex):
//   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
// It is read from the file, not hard-coded; translate_pattern rewrites \s/\S (Oniguruma's
// White_Space) and \p{L}/\p{N} (Unicode 15-16 additions, unicode_delta.inc) so that PCRE2
// classifies every code point as tokenizers does.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "pre_tokenizer.hpp"

#include <pcre2.h>

#include <bitset>
#include <cstdio>
#include <iterator>
#include <stdexcept>

#include "nla/core/error.hpp"
#include "utf8.hpp"

namespace nla::tokenizer::detail {

const char* const k_gpt2_pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

namespace {

#include "unicode_delta.inc"

// Unicode White_Space (what \s means to Oniguruma and to Rust's char::is_whitespace).
constexpr const char* k_white_space =
    R"(\t\n\x{0B}\f\r\x{20}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";

std::string class_text(const CodeRange* ranges, size_t count) {
  std::string out;
  char buffer[48];
  for (size_t i = 0; i < count; ++i) {
    std::snprintf(buffer, sizeof buffer, "\\x{%X}-\\x{%X}", ranges[i].first, ranges[i].last);
    out += buffer;
  }
  return out;
}

// One bit per block of 256 code points that holds an extended letter or number.
const std::bitset<0x1100>& extended_blocks() {
  static const std::bitset<0x1100> blocks = [] {
    std::bitset<0x1100> bits;
    auto mark = [&](const auto& list) {
      for (const CodeRange& r : list)
        for (uint32_t block = r.first >> 8; block <= r.last >> 8; ++block) bits.set(block);
    };
    mark(k_extra_letters);
    mark(k_extra_numbers);
    return bits;
  }();
  return blocks;
}

bool is_extended(uint32_t cp) {
  auto in = [cp](const auto& list) {
    for (const CodeRange& r : list)
      if (cp >= r.first && cp <= r.last) return true;
    return false;
  };
  return in(k_extra_letters) || in(k_extra_numbers);
}

}  // namespace

bool has_extended_code_point(std::string_view text) {
  const auto& blocks = extended_blocks();
  for (size_t i = 0; i < text.size();) {
    auto lead = static_cast<unsigned char>(text[i]);
    if (lead < 0xE1) {  // below U+1000: no extended code point
      ++i;
      continue;
    }
    uint32_t cp;
    i += decode_utf8(text, i, cp);
    if (blocks.test(cp >> 8) && is_extended(cp)) return true;
  }
  return false;
}

std::string translate_pattern(const std::string& pattern, bool extend_classes) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      char e = pattern[i + 1];
      ++i;
      if (extend_classes && e == 'p' &&
          (pattern.compare(i + 1, 3, "{L}") == 0 || pattern.compare(i + 1, 3, "{N}") == 0)) {
        // \p{L} / \p{N} with the letters and numbers of newer Unicode versions.
        bool letters = pattern[i + 2] == 'L';
        std::string with_extra = std::string("\\p") + pattern.substr(i + 1, 3) +
                                 (letters ? class_text(k_extra_letters, std::size(k_extra_letters))
                                          : class_text(k_extra_numbers, std::size(k_extra_numbers)));
        out += in_class ? with_extra : "[" + with_extra + "]";
        i += 3;
      } else if (e == 's') {
        out += in_class ? std::string(k_white_space) : "[" + std::string(k_white_space) + "]";
      } else if (e == 'S' && !in_class) {
        out += "[^" + std::string(k_white_space) + "]";
      } else if (e == 'S') {
        throw std::invalid_argument("\\S inside a character class is not supported");
      } else {
        out += c;
        out += e;
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out += pattern[++i];
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out += pattern[++i];
      continue;
    }
    if (in_class && c == ']') in_class = false;
    out += c;
  }
  return out;
}

struct PreTokenizer::Compiled {
  pcre2_code* code = nullptr;
  ~Compiled() { pcre2_code_free(code); }
};

namespace {

std::unique_ptr<PreTokenizer::Compiled> compile(const std::string& pattern, bool extend_classes,
                                                const std::string& where);

}  // namespace

PreTokenizer::PreTokenizer(const std::string& pattern, const std::string& where)
    : pattern_(pattern), plain_(compile(pattern, false, where)), extended_(compile(pattern, true, where)) {}

namespace {

std::unique_ptr<PreTokenizer::Compiled> compile(const std::string& pattern, bool extend_classes,
                                                const std::string& where) {
  std::string translated;
  try {
    translated = translate_pattern(pattern, extend_classes);
  } catch (const std::invalid_argument& e) {
    NLA_INPUT_ERROR(where, ": expected a supported regex: ", e.what());
  }
  auto compiled = std::make_unique<PreTokenizer::Compiled>();
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  compiled->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                                 PCRE2_UTF | PCRE2_UCP, &error_code, &error_offset, nullptr);
  if (!compiled->code) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error_code, message, sizeof message);
    NLA_INPUT_ERROR(where, ": expected a valid regex: ", reinterpret_cast<const char*>(message), " at offset ",
                    error_offset);
  }
  int jit = pcre2_jit_compile(compiled->code, PCRE2_JIT_COMPLETE);
  NLA_CHECK(jit == 0, "PCRE2 JIT compilation failed (", jit, ") for ", where);
  return compiled;
}

}  // namespace

PreTokenizer::~PreTokenizer() = default;

void PreTokenizer::split(std::string_view text, std::vector<Piece>& pieces) const {
  if (text.empty()) return;
  // One match block per call: small, and calls on other threads need their own.
  pcre2_match_data* match = pcre2_match_data_create(1, nullptr);
  NLA_CHECK(match, "out of memory");
  const pcre2_code* code = has_extended_code_point(text) ? extended_->code : plain_->code;
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  const PCRE2_SIZE length = text.size();
  PCRE2_SIZE position = 0;
  PCRE2_SIZE last_end = 0;  // text between matches (none for Qwen2's regex) is a piece too
  while (position < length) {
    int rc = pcre2_jit_match(code, subject, length, position, 0, match, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      pcre2_match_data_free(match);
      NLA_THROW("PCRE2 match failed (", rc, ") at byte ", position);
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match);
    PCRE2_SIZE start = ovector[0], end = ovector[1];
    if (start > last_end) pieces.push_back({uint32_t(last_end), uint32_t(start - last_end)});
    if (end == start) {
      // An empty match: step over one character (as the Rust regex iterators do).
      position = end + 1;
      while (position < length && (static_cast<unsigned char>(text[position]) & 0xC0) == 0x80) ++position;
      last_end = start;
      continue;
    }
    pieces.push_back({uint32_t(start), uint32_t(end - start)});
    position = last_end = end;
  }
  if (last_end < length) pieces.push_back({uint32_t(last_end), uint32_t(length - last_end)});
  pcre2_match_data_free(match);
}

}  // namespace nla::tokenizer::detail
