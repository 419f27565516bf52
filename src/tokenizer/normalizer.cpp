// NFC normalization (utf8proc) with a quick check that avoids the utf8proc call for text
// that is already NFC (ASCII, Latin, CJK, kana, Hangul syllables, emoji).
#include "normalizer.hpp"

#include <utf8proc.h>

#include <cstdlib>

#include "nla/core/error.hpp"
#include "utf8.hpp"

namespace nla::tokenizer::detail {

namespace {

// Code points that are NFC_Quick_Check=Yes and have combining class 0, so that no
// neighbour can compose with them or reorder around them. Conservative by design: a code
// point outside these ranges only sends the text through utf8proc. The NFC_QC=Maybe
// characters (U+0300.., U+1161.., U+3099, ...) and the singletons (U+2000, U+2126, U+F900..)
// are outside.
bool nfc_inert(uint32_t cp) {
  if (cp < 0x300) return true;                         // ASCII, Latin-1, Latin Extended A/B, IPA, modifiers
  if (cp >= 0x391 && cp <= 0x3C9) return true;         // basic Greek letters
  if (cp >= 0x400 && cp <= 0x482) return true;         // Cyrillic (before its combining marks)
  if (cp >= 0x2002 && cp <= 0x206F) return true;       // general punctuation, ZWJ, ZWSP
  if (cp >= 0x2190 && cp <= 0x2328) return true;       // arrows, math operators, technical
  if (cp >= 0x232B && cp <= 0x23FF) return true;       // (U+2329/U+232A are singletons)
  if (cp >= 0x2500 && cp <= 0x27BF) return true;       // box drawing, shapes, dingbats
  if (cp >= 0x3000 && cp <= 0x3029) return true;       // CJK symbols and punctuation
  if (cp >= 0x3041 && cp <= 0x3096) return true;       // hiragana
  if (cp >= 0x30A1 && cp <= 0x30FA) return true;       // katakana
  if (cp >= 0x3400 && cp <= 0x4DBF) return true;       // CJK extension A
  if (cp >= 0x4E00 && cp <= 0x9FFF) return true;       // CJK unified ideographs
  if (cp >= 0xAC00 && cp <= 0xD7A3) return true;       // Hangul syllables (jamo that compose are not here)
  if (cp >= 0xFE00 && cp <= 0xFE0F) return true;       // variation selectors
  if (cp >= 0xFF01 && cp <= 0xFFEF) return true;       // full/half-width forms
  if (cp >= 0x1F000 && cp <= 0x1FAFF) return true;     // emoji and pictographs
  if (cp >= 0x20000 && cp <= 0x2A6DF) return true;     // CJK extension B
  if (cp >= 0xE0020 && cp <= 0xE007F) return true;     // tag characters (flag sequences)
  return false;
}

// Combining marks and composition partners added to Unicode after the tables of
// tokenizers' normalizer (the unicode-normalization-alignments crate): tokenizers treats
// them as unassigned starters (combining class 0, no composition), utf8proc reorders or
// composes them. Found by comparing both normalizers on every code point (alone, after
// U+0301 and U+0316, before them, and as canonical decompositions); the fixture cases of
// category nfc_versions check each one.
struct Range {
  uint32_t first, last;
};
constexpr Range k_unknown_to_tokenizers[] = {
    {0x7FD, 0x7FD},
    {0x898, 0x89F},
    {0x8CA, 0x8D3},
    {0x9FE, 0x9FE},
    {0xC3C, 0xC3C},
    {0xD3B, 0xD3C},
    {0xEBA, 0xEBA},
    {0x1715, 0x1715},
    {0x1ABF, 0x1ACE},
    {0x1DF6, 0x1DFA},
    {0xA82C, 0xA82C},
    {0x10D24, 0x10D27},
    {0x10EAB, 0x10EAC},
    {0x10EFD, 0x10EFF},
    {0x10F46, 0x10F50},
    {0x10F82, 0x10F85},
    {0x11070, 0x11070},
    {0x1133B, 0x1133B},
    {0x1145E, 0x1145E},
    {0x11839, 0x1183A},
    {0x11930, 0x11930},
    {0x11938, 0x11938},
    {0x1193D, 0x1193E},
    {0x11943, 0x11943},
    {0x119E0, 0x119E0},
    {0x11A34, 0x11A34},
    {0x11A47, 0x11A47},
    {0x11A99, 0x11A99},
    {0x11D42, 0x11D42},
    {0x11D44, 0x11D45},
    {0x11D97, 0x11D97},
    {0x11F41, 0x11F42},
    {0x16FF0, 0x16FF1},
    {0x1E08F, 0x1E08F},
    {0x1E130, 0x1E136},
    {0x1E2AE, 0x1E2AE},
    {0x1E2EC, 0x1E2EF},
    {0x1E4EC, 0x1E4EF}};

bool unknown_to_tokenizers(uint32_t cp) {
  if (cp < k_unknown_to_tokenizers[0].first) return false;
  for (const Range& r : k_unknown_to_tokenizers)
    if (cp >= r.first && cp <= r.last) return true;
  return false;
}

std::string utf8proc_nfc(std::string_view text) {
  if (text.empty()) return {};
  utf8proc_uint8_t* mapped = nullptr;
  utf8proc_ssize_t length = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                         static_cast<utf8proc_ssize_t>(text.size()), &mapped,
                                         static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (length < 0) NLA_THROW("NFC normalization failed: ", utf8proc_errmsg(length));
  std::string out(reinterpret_cast<const char*>(mapped), static_cast<size_t>(length));
  std::free(mapped);
  return out;
}

}  // namespace

bool nfc_quick_check(std::string_view text) {
  size_t i = 0;
  const size_t n = text.size();
  while (i < n) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c < 0xCC) { ++i; continue; }  // ASCII, continuation bytes, and leads of U+0080..U+02FF
    uint32_t cp;
    i += decode_utf8(text, i, cp);
    if (!nfc_inert(cp)) return false;
  }
  return true;
}

std::string_view Normalizer::normalize(std::string_view text, std::string& scratch) const {
  if (kind_ == Kind::none || nfc_quick_check(text)) return text;
  // A starter that no mark can cross or compose with cuts the text into parts that
  // normalize independently: NFC(x c y) = NFC(x) c NFC(y).
  scratch.clear();
  size_t part = 0;
  for (size_t i = 0; i < text.size();) {
    uint32_t cp;
    size_t length = decode_utf8(text, i, cp);
    if (cp >= 0x7FD && unknown_to_tokenizers(cp)) {
      scratch += utf8proc_nfc(text.substr(part, i - part));
      scratch.append(text.data() + i, length);
      part = i + length;
    }
    i += length;
  }
  scratch += utf8proc_nfc(text.substr(part));
  return scratch;
}

}  // namespace nla::tokenizer::detail
