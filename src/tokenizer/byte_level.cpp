// bytes_to_unicode() of GPT-2 (openai/gpt-2 encoder.py), as Hugging Face's ByteLevel uses it.
#include "byte_level.hpp"

#include "utf8.hpp"

namespace nla::tokenizer::detail {

namespace {

struct ByteMap {
  std::array<uint32_t, 256> code_point{};
  std::array<std::string, 256> chars;
  ByteMap() {
    auto printable = [](int b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); };
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      code_point[b] = printable(b) ? static_cast<uint32_t>(b) : next++;
      append_utf8(chars[b], code_point[b]);
    }
  }
};

const ByteMap& byte_map() {
  static const ByteMap map;
  return map;
}

}  // namespace

const std::array<std::string, 256>& byte_to_chars() { return byte_map().chars; }

int char_to_byte(uint32_t cp) {
  if (cp < 0x100) {
    bool printable = (cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE);
    return printable ? static_cast<int>(cp) : -1;
  }
  if (cp < 0x100 + 68) {
    // U+0100 + k stands for the k-th non-printable byte.
    static const std::array<int, 68> bytes = [] {
      std::array<int, 68> out{};
      const auto& map = byte_map();
      for (int b = 0; b < 256; ++b)
        if (map.code_point[b] >= 0x100) out[map.code_point[b] - 0x100] = b;
      return out;
    }();
    return bytes[cp - 0x100];
  }
  return -1;
}

}  // namespace nla::tokenizer::detail
