// UTF-8 helpers shared by the tokenizer stages: decoding one code point, validation, and
// Rust's String::from_utf8_lossy (which Hugging Face's byte-level decoder applies).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace nla::tokenizer::detail {

// Decodes the code point starting at text[i] of VALID UTF-8; returns its byte length.
inline size_t decode_utf8(std::string_view text, size_t i, uint32_t& cp) {
  auto b = [&](size_t k) { return static_cast<uint32_t>(static_cast<unsigned char>(text[i + k])); };
  uint32_t c = b(0);
  if (c < 0x80) { cp = c; return 1; }
  if (c < 0xE0) { cp = ((c & 0x1F) << 6) | (b(1) & 0x3F); return 2; }
  if (c < 0xF0) { cp = ((c & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F); return 3; }
  cp = ((c & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
  return 4;
}

void append_utf8(std::string& out, uint32_t cp);

// Byte offset of the first ill-formed sequence, or npos when `text` is valid UTF-8.
size_t find_invalid_utf8(std::string_view text);

// Every maximal ill-formed subpart becomes one U+FFFD, exactly as Rust's
// String::from_utf8_lossy does (the Unicode "substitution of maximal subparts" practice).
std::string utf8_lossy(std::string_view bytes);

}  // namespace nla::tokenizer::detail
