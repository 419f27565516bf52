// The GPT-2 byte <-> unicode map of byte-level BPE: every byte gets a printable character
// (printable Latin-1 bytes map to themselves, the other 68 to U+0100..U+0143), so that
// vocabulary entries are text ("Ġthe" is " the").
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace nla::tokenizer::detail {

// UTF-8 of the character that stands for byte b.
const std::array<std::string, 256>& byte_to_chars();
// The byte a character stands for, or -1 when the character is not in the map.
int char_to_byte(uint32_t cp);

}  // namespace nla::tokenizer::detail
