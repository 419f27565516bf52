// Token context around store samples (see sample_context.hpp).
#include "nla/label/sample_context.hpp"

#include <algorithm>

#include "nla/core/error.hpp"

namespace nla::label {

SampleContextReader::SampleContextReader(const store::ActivationStore& acts, const tokenizer::Tokenizer& tok)
    : acts_(acts), tok_(tok) {
  NLA_CHECK_INPUT(tok.sha256() == acts.header().tokenizer_sha256, tok.path(),
                  ": tokenizer differs from the one ", acts.path(), " was made with (sha256 ", tok.sha256(), " vs ",
                  acts.header().tokenizer_sha256, ")");
}

SampleContext SampleContextReader::context(int64_t row, int before, int after) {
  int64_t document = acts_.sample_document(row);
  if (document != cached_document_) {
    tokens_ = tok_.encode(acts_.document_text(document));
    source_ = acts_.document_source(document);
    cached_document_ = document;
  }
  const int64_t position = acts_.sample_position(row);
  NLA_CHECK_INPUT(position < static_cast<int64_t>(tokens_.size()) && tokens_[position] == acts_.sample_token(row),
                  acts_.path(), ": sample ", row, ": token at position ", position, " differs from the store's");
  SampleContext context;
  context.token = tokens_[position];
  context.before.assign(tokens_.begin() + std::max<int64_t>(0, position - before), tokens_.begin() + position);
  context.after.assign(tokens_.begin() + position + 1,
                       tokens_.begin() + std::min<int64_t>(static_cast<int64_t>(tokens_.size()), position + 1 + after));
  context.source = source_;
  return context;
}

}  // namespace nla::label
