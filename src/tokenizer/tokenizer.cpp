// Tokenizer: the pipeline of encode (added tokens -> NFC -> split -> BPE) and decode
// (byte-level map -> lossy UTF-8), over a TokenizerModel loaded from tokenizer.json.
#include "nla/tokenizer/tokenizer.hpp"

#include <atomic>

#include "byte_level.hpp"
#include "model.hpp"
#include "nla/core/atomic_file.hpp"
#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "sha256.hpp"
#include "utf8.hpp"

namespace nla::tokenizer {

struct Tokenizer::Impl {
  std::string path;
  std::string sha256;
  uint64_t instance = 0;  // keys the per-thread word caches
  detail::TokenizerModel model;

  void encode_words(std::string_view text, std::vector<detail::Piece>& pieces, std::vector<TokenId>& ids) const;
  void encode_normalized(std::string_view text, std::vector<detail::Piece>& pieces, std::vector<TokenId>& ids) const;
};

namespace {

uint64_t next_instance() {
  static std::atomic<uint64_t> counter{0};
  return ++counter;
}

}  // namespace

Tokenizer Tokenizer::from_file(const std::string& path) {
  std::string file = path;
  if (fs::is_directory(path)) file = fs::join(path, "tokenizer.json");
  auto impl = std::make_shared<Impl>();
  impl->path = file;
  std::string bytes = read_file(file);
  impl->sha256 = detail::sha256_hex(bytes);
  impl->instance = next_instance();
  detail::load_tokenizer_json(file, bytes, impl->model);
  Tokenizer tokenizer;
  tokenizer.impl_ = std::move(impl);
  return tokenizer;
}

// Split + BPE of text that is already normalized and free of added tokens.
void Tokenizer::Impl::encode_words(std::string_view text, std::vector<detail::Piece>& pieces,
                                   std::vector<TokenId>& ids) const {
  pieces.clear();
  model.pre_tokenizer->split(text, pieces);
  for (const detail::Piece& piece : pieces) {
    std::string_view word = text.substr(piece.offset, piece.length);
    if (model.ignore_merges) {
      std::string chars;
      for (unsigned char b : word) chars += detail::byte_to_chars()[b];
      auto it = model.token_ids.find(chars);
      if (it != model.token_ids.end()) {
        ids.push_back(it->second);
        continue;
      }
    }
    model.bpe.encode_word(word, ids, instance);
  }
}

// Normalize a stretch of raw text between added tokens, then look for the added tokens
// that match in normalized form.
void Tokenizer::Impl::encode_normalized(std::string_view text, std::vector<detail::Piece>& pieces,
                                        std::vector<TokenId>& ids) const {
  std::string scratch;
  std::string_view normalized = model.normalizer.normalize(text, scratch);
  if (model.normalized_added.empty()) {
    encode_words(normalized, pieces, ids);
    return;
  }
  std::vector<detail::Segment> segments;
  model.normalized_added.split(normalized, segments);
  for (const detail::Segment& segment : segments) {
    if (segment.id >= 0) ids.push_back(segment.id);
    else encode_words(normalized.substr(segment.offset, segment.length), pieces, ids);
  }
}

std::vector<TokenId> Tokenizer::encode(std::string_view text) const {
  size_t bad = detail::find_invalid_utf8(text);
  NLA_CHECK_INPUT(bad == std::string_view::npos, "tokenizer: text is not valid UTF-8 (byte ", bad, ")");
  NLA_CHECK_INPUT(text.size() < (size_t(1) << 31), "tokenizer: text of ", text.size(),
                  " bytes: expected less than 2 GiB");
  std::vector<TokenId> ids;
  ids.reserve(text.size() / 4 + 8);
  std::vector<detail::Piece> pieces;
  if (impl_->model.raw_added.empty()) {
    impl_->encode_normalized(text, pieces, ids);
    return ids;
  }
  std::vector<detail::Segment> segments;
  impl_->model.raw_added.split(text, segments);
  for (const detail::Segment& segment : segments) {
    if (segment.id >= 0) ids.push_back(segment.id);
    else impl_->encode_normalized(text.substr(segment.offset, segment.length), pieces, ids);
  }
  return ids;
}

std::string Tokenizer::decode(const std::vector<TokenId>& ids, bool skip_special_tokens) const {
  const auto& model = impl_->model;
  std::string bytes;
  bytes.reserve(ids.size() * 4);
  const size_t n = model.id_tokens.size();
  for (TokenId id : ids) {
    // Ids without a token are dropped, as tokenizers does.
    if (id < 0 || static_cast<size_t>(id) >= n) continue;
    uint8_t flags = model.id_flags[id];
    if (!(flags & detail::TokenizerModel::k_present)) continue;
    if (skip_special_tokens && (flags & detail::TokenizerModel::k_special)) continue;
    bytes.append(model.decoded_bytes, model.decoded_offsets[id], model.decoded_offsets[id + 1] - model.decoded_offsets[id]);
  }
  return detail::utf8_lossy(bytes);
}

int64_t Tokenizer::vocab_size() const { return static_cast<int64_t>(impl_->model.id_tokens.size()); }

std::optional<TokenId> Tokenizer::token_to_id(std::string_view token) const {
  auto it = impl_->model.token_ids.find(std::string(token));
  if (it == impl_->model.token_ids.end()) return std::nullopt;
  return it->second;
}

std::string Tokenizer::id_to_token(TokenId id) const {
  const auto& model = impl_->model;
  NLA_CHECK_INPUT(id >= 0 && static_cast<size_t>(id) < model.id_tokens.size() &&
                      (model.id_flags[id] & detail::TokenizerModel::k_present),
                  impl_->path, ": token id ", id, ": expected an id of the vocabulary (size ", vocab_size(), ")");
  return model.id_tokens[id];
}

bool Tokenizer::is_special(TokenId id) const {
  const auto& model = impl_->model;
  return id >= 0 && static_cast<size_t>(id) < model.id_flags.size() &&
         (model.id_flags[id] & detail::TokenizerModel::k_special);
}

const std::string& Tokenizer::sha256() const { return impl_->sha256; }
const std::string& Tokenizer::path() const { return impl_->path; }

}  // namespace nla::tokenizer
