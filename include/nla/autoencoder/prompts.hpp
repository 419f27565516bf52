// The NLA's two prompts, exactly as the authors' released checkpoints expect them
// (DESIGN section 1): the AV prompt with its injection marker, and the AR input.
//
//   AV: one user turn through the chat template (generation prompt added); the marker
//       character U+320E sits between "<concept>" and "</concept>" and its input embedding is
//       replaced by h * s / |h|.
//   AR: the raw string "Summary of the following text: <text>{explanation}</text> <summary>",
//       no chat template; h_hat is read at its last token. {explanation} is the bare text
//       between the answer's tags (see parse_answer), never the tags themselves.
// The placeholders are the authors' (their loader calls actor_template.format(injection_char=
// ...)); templates that nla wrote before 2026-12 say {marker} and {description}, and load too.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "nla/tokenizer/tokenizer.hpp"

namespace nla::autoencoder {

inline constexpr const char* kInjectionChar = "\xE3\x88\x8E";  // U+320E, UTF-8
inline constexpr int64_t kImEndTokenId = 151645;      // <|im_end|>: the end of the assistant turn
inline constexpr int64_t kEndOfTextTokenId = 151643;  // <|endoftext|>: Qwen2.5's other eos (generation_config)
inline constexpr int64_t kPadTokenId = kEndOfTextTokenId;  // padding of AR/AV batches: masked out, any valid id works
inline constexpr int64_t kInjectionTokenId = 149705;
inline constexpr int64_t kInjectionLeftNeighborId = 29;    // ">" of "<concept>"
inline constexpr int64_t kInjectionRightNeighborId = 522;  // "</" of "</concept>"
// The last five ids of every AR input in Qwen2.5: "text", ">", " <", "summary", ">".
inline const std::vector<int64_t> kCriticSuffixIds = {1318, 29, 366, 1708, 29};

// The AV user message with `{injection_char}` standing for the injection character.
extern const char* const kActorTemplate;
// The AR input with `{explanation}` standing for the explanation.
extern const char* const kCriticTemplate;

// The user message text: kActorTemplate (or `actor_template`) with the marker put in.
std::string av_user_text(const std::string& actor_template = kActorTemplate);

// The AV prompt as token ids and the index of the marker token in them.
struct AvPrompt {
  std::vector<tokenizer::TokenId> ids;
  int64_t marker_position = -1;
};

// Renders the chat template (Qwen2.5 default system prompt, generation prompt), encodes it
// and checks the marker: exactly one token kInjectionTokenId with neighbours 29 and 522.
// InputError naming the tokenizer otherwise (another tokenizer would silently inject into
// the wrong token).
AvPrompt av_prompt(const tokenizer::Tokenizer& tokenizer, const std::string& actor_template = kActorTemplate);

// The injected vectors: h * s / |h| computed in fp32. h: (N, d) any float dtype -> (N, d) fp32.
at::Tensor injection_vectors(const at::Tensor& h, double injection_scale);

// "Summary of the following text: <text>{explanation}</text> <summary>"
std::string ar_input_text(const std::string& explanation, const std::string& critic_template = kCriticTemplate);
std::vector<tokenizer::TokenId> ar_input_ids(const tokenizer::Tokenizer& tokenizer, const std::string& description,
                                             const std::string& critic_template = kCriticTemplate);

}  // namespace nla::autoencoder
