// The tokenizer.json normalizer: none or NFC (Qwen2). NFC runs through utf8proc, after a
// quick check that skips text that NFC leaves unchanged (nearly all of it).
#pragma once

#include <string>
#include <string_view>

namespace nla::tokenizer::detail {

class Normalizer {
 public:
  enum class Kind { none, nfc };
  explicit Normalizer(Kind kind = Kind::none) : kind_(kind) {}
  Kind kind() const { return kind_; }
  // `text` itself when normalization leaves it unchanged, else a view of `scratch`.
  // `text` must be valid UTF-8.
  std::string_view normalize(std::string_view text, std::string& scratch) const;

 private:
  Kind kind_;
};

// True when every code point of `text` is NFC_Quick_Check=Yes with canonical combining
// class 0 from a conservative list of ranges: then NFC(text) == text.
bool nfc_quick_check(std::string_view text);

}  // namespace nla::tokenizer::detail
