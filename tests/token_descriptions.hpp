// Token-only gold descriptions for the end-to-end tests: row r of a store gets
// "<explanation>\n'TOKEN'\n</explanation>" with TOKEN the decoded token at its position
// (newlines written as \n), the shortest answer that still depends on the activation.
#pragma once

#include <string>

namespace nla::test {

// Writes them into `store_path` as /descriptions/<name>, decoding with the tokenizer of
// `tokenizer_dir` (a model directory or tokenizer.json).
void write_token_descriptions(const std::string& store_path, const std::string& tokenizer_dir,
                              const std::string& name = "gold");

}  // namespace nla::test
