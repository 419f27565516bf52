// SHA-256 of a byte string, as lowercase hex: identifies the tokenizer.json in outputs.
#pragma once

#include <string>
#include <string_view>

namespace nla::tokenizer::detail {

std::string sha256_hex(std::string_view bytes);

}  // namespace nla::tokenizer::detail
