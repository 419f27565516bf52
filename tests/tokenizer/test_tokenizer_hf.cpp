// Parity with Hugging Face's tokenizers (the Rust library, npm tokenizers@0.23.2) on the
// real Qwen2.5 tokenizer.json: every fixture case must match exactly, encode and decode.
// Fixture: tests/data/tokenizer/qwen2_hf_cases.jsonl (tests/tools/gen_tokenizer_cases.mjs).
// Also llama.cpp's qwen2 vocab vectors (tests/tools/fetch_llama_vocab_vectors.sh).
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "nla/core/fs.hpp"
#include "test_support.hpp"
#include "tokenizer_test_util.hpp"

namespace nla::test {

using tokenizer::TokenId;

TEST(TokenizerHf, EveryFixtureCaseMatches) {
  const auto& tok = qwen_tokenizer();
  std::ifstream in(test_data("tokenizer/qwen2_hf_cases.jsonl"));
  ASSERT_TRUE(in) << "missing fixture";
  std::string line;
  int line_number = 0, encode_cases = 0, decode_cases = 0, failures = 0;
  std::map<std::string, int> failures_by_category;
  while (std::getline(in, line)) {
    ++line_number;
    auto c = nlohmann::json::parse(line);
    auto expected_ids = c["ids"].get<std::vector<TokenId>>();
    std::string expected_text = c["decoded"].get<std::string>();
    std::string where = "fixture line " + std::to_string(line_number) + " (" + c["category"].get<std::string>() + ")";
    if (c["kind"] == "encode") {
      ++encode_cases;
      std::string text = c["text"].get<std::string>();
      auto ids = tok.encode(text);
      if (ids != expected_ids) {
        ++failures;
        ++failures_by_category[c["category"].get<std::string>()];
        if (failures <= 20)
          ADD_FAILURE() << where << ": encode of \"" << escape(text) << "\"\n  ours: " << describe_ids(tok, ids)
                        << "\n  HF:   " << describe_ids(tok, expected_ids);
      }
      std::string decoded = tok.decode(expected_ids);
      EXPECT_EQ(decoded, expected_text) << where << ": decode of " << describe_ids(tok, expected_ids);
    } else {
      ++decode_cases;
      bool skip = c["skip_special"].get<bool>();
      std::string decoded = tok.decode(expected_ids, skip);
      EXPECT_EQ(decoded, expected_text) << where << ": decode (skip_special " << skip << ") of "
                                        << describe_ids(tok, expected_ids);
    }
  }
  EXPECT_GE(encode_cases + decode_cases, 1000);
  EXPECT_GT(decode_cases, 100);
  for (const auto& [category, count] : failures_by_category)
    ADD_FAILURE() << count << " encode failures in category " << category;
  std::printf("checked %d encode and %d decode cases against Hugging Face tokenizers\n", encode_cases, decode_cases);
}

// llama.cpp's test vectors: cases separated by "\n__ggml_vocab_test__\n" in .inp, one line
// of space-separated ids per case in .out (the format of llama.cpp's test-tokenizer-0).
TEST(TokenizerHf, LlamaCppQwen2VocabVectors) {
  std::string dir = repo_path("third_party/llama-vocab");
  std::string inp = dir + "/ggml-vocab-qwen2.gguf.inp", out = dir + "/ggml-vocab-qwen2.gguf.out";
  if (!fs::exists(inp) || !fs::exists(out))
    GTEST_SKIP() << "llama.cpp vectors not found in " << dir << ": run tests/tools/fetch_llama_vocab_vectors.sh";
  std::string raw = read_text(inp);
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  for (size_t pos = 0; pos < raw.size();) {
    size_t next = raw.find(sep, pos);
    if (next == std::string::npos) {
      texts.push_back(raw.substr(pos));
      break;
    }
    texts.push_back(raw.substr(pos, next - pos));
    pos = next + sep.size();
  }
  std::vector<std::vector<TokenId>> expected;
  std::istringstream lines(read_text(out));
  for (std::string line; std::getline(lines, line);) {
    std::istringstream ids(line);
    expected.emplace_back();
    for (TokenId id; ids >> id;) expected.back().push_back(id);
  }
  ASSERT_EQ(texts.size(), expected.size()) << "input and output files have different numbers of cases";
  ASSERT_GT(texts.size(), 30u);
  const auto& tok = qwen_tokenizer();
  for (size_t i = 0; i < texts.size(); ++i) {
    auto ids = tok.encode(texts[i]);
    EXPECT_EQ(ids, expected[i]) << "case " << i << " \"" << escape(texts[i]) << "\"\n  ours:     "
                                << describe_ids(tok, ids) << "\n  llama.cpp: " << describe_ids(tok, expected[i]);
    EXPECT_EQ(tok.decode(ids), texts[i]) << "case " << i;
  }
}

}  // namespace nla::test
