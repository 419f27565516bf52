// Helpers of the tokenizer tests: the Qwen2.5 tokenizer (loaded once), JSONL fixtures,
// and id lists printed with their pieces for failure reports.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "nla/tokenizer/tokenizer.hpp"

namespace nla::test {

// models/tokenizer.json (scripts/setup.sh installs it); fails the test when absent.
const tokenizer::Tokenizer& qwen_tokenizer();
std::string qwen_tokenizer_path();

// "[9707 'Hello', 1879 ' world']": ids with their decoded pieces, to read a mismatch.
std::string describe_ids(const tokenizer::Tokenizer& tok, const std::vector<tokenizer::TokenId>& ids);
// A string with its non-printable bytes escaped, for messages.
std::string escape(const std::string& text);

}  // namespace nla::test
