// Byte-level BPE tokenizer read from a Hugging Face tokenizer.json (Qwen2/Qwen2.5).
//
// encode(): added/special tokens (<|endoftext|>, <|im_start|>, ...) are matched in the raw
// text first; each remaining span is NFC-normalised, split by the Qwen2 pre-tokenizer regex,
// mapped to byte-level characters and merged by BPE rank. decode() reverses the byte-level
// mapping; invalid UTF-8 becomes U+FFFD exactly as Hugging Face's decoder does.
// Thread-safe for concurrent encode/decode calls.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nla::tokenizer {

using TokenId = int32_t;

class Tokenizer {
 public:
  // `path` is a tokenizer.json or a directory holding one. InputError naming the file
  // and the field when the file is not a supported tokenizer.
  static Tokenizer from_file(const std::string& path);

  // As Hugging Face's encode(text, add_special_tokens=False). `text` must be valid UTF-8
  // (InputError otherwise).
  std::vector<TokenId> encode(std::string_view text) const;
  // Ids that name no token are dropped, as Hugging Face does.
  std::string decode(const std::vector<TokenId>& ids, bool skip_special_tokens = false) const;

  // Vocabulary (regular and added tokens). vocab_size() is the largest id + 1.
  int64_t vocab_size() const;
  std::optional<TokenId> token_to_id(std::string_view token) const;
  std::string id_to_token(TokenId id) const;  // the raw vocabulary entry ("Ġthe"); InputError if none
  bool is_special(TokenId id) const;
  // sha256 of the tokenizer.json bytes (recorded in outputs).
  const std::string& sha256() const;
  const std::string& path() const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

// One turn of a conversation.
struct ChatMessage {
  std::string role;  // "system" | "user" | "assistant"
  std::string content;
};

// The Qwen2.5 chat template (ChatML) as its tokenizer_config.json renders it without tools:
// a default system prompt ("You are Qwen, created by Alibaba Cloud. You are a helpful
// assistant.") when the first message is not a system message, then
// "<|im_start|>{role}\n{content}<|im_end|>\n" per message, then "<|im_start|>assistant\n"
// when add_generation_prompt is set.
std::string render_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt);

}  // namespace nla::tokenizer
