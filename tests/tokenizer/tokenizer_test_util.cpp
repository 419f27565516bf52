// Shared helpers of the tokenizer tests.
#include "nla/core/fs.hpp"
#include "tokenizer_test_util.hpp"

#include <cstdio>

#include "byte_level.hpp"
#include "test_support.hpp"
#include "utf8.hpp"

namespace nla::test {

std::string qwen_tokenizer_path() { return repo_path("models/tokenizer.json"); }

const tokenizer::Tokenizer& qwen_tokenizer() {
  static const tokenizer::Tokenizer tok = [] {
    std::string path = qwen_tokenizer_path();
    if (!fs::exists(path)) {
      ADD_FAILURE() << path << " is missing: run scripts/setup.sh";
      throw std::runtime_error("missing " + path);
    }
    return tokenizer::Tokenizer::from_file(path);
  }();
  return tok;
}

std::string escape(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7F) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string describe_ids(const tokenizer::Tokenizer& tok, const std::vector<tokenizer::TokenId>& ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(ids[i]) + " '";
    std::string piece = tok.decode({ids[i]});
    if (piece.find("\xEF\xBF\xBD") == std::string::npos || tok.id_to_token(ids[i]).find("\xEF\xBF\xBD") != std::string::npos) {
      out += escape(piece);
    } else {
      // Part of a character: show its bytes.
      std::string token = tok.id_to_token(ids[i]);
      for (size_t k = 0; k < token.size();) {
        uint32_t cp;
        k += tokenizer::detail::decode_utf8(token, k, cp);
        int b = tokenizer::detail::char_to_byte(cp);
        char hex[8];
        std::snprintf(hex, sizeof hex, "\\x%02x", b & 0xFF);
        out += b >= 0x20 && b < 0x7F ? std::string(1, char(b)) : std::string(hex);
      }
    }
    out += "'";
  }
  return out + "]";
}

}  // namespace nla::test
