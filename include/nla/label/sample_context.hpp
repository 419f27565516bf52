// The token context of a store sample: the document re-tokenised with the store's
// tokenizer, and the tokens before and after the sampled position. Rows of one document
// are adjacent in a store, so the last document's tokens are cached.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nla/store/activation_store.hpp"
#include "nla/tokenizer/tokenizer.hpp"

namespace nla::label {

struct SampleContext {
  std::vector<tokenizer::TokenId> before;  // up to `before` tokens ending just before the position
  tokenizer::TokenId token = 0;            // the token at the position
  std::vector<tokenizer::TokenId> after;   // up to `after` tokens following it
  std::string source;                      // the document's domain
};

class SampleContextReader {
 public:
  // InputError naming the tokenizer when it is not the one the store was made with.
  SampleContextReader(const store::ActivationStore& acts, const tokenizer::Tokenizer& tok);
  SampleContext context(int64_t row, int before, int after);

 private:
  const store::ActivationStore& acts_;
  const tokenizer::Tokenizer& tok_;
  int64_t cached_document_ = -1;
  std::vector<tokenizer::TokenId> tokens_;
  std::string source_;
};

}  // namespace nla::label
