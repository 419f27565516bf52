// The AV prompt and the AR input (DESIGN section 1), and the injection rescaling.
#include "nla/nla/prompts.hpp"

#include <ATen/ATen.h>

#include "nla/core/error.hpp"

namespace nla::autoencoder {

const char* const kActorTemplate =
    "You are a meticulous AI researcher conducting an important investigation into activation vectors from a "
    "language model. Your overall task is to describe the semantic content of that activation vector.\n\n"
    "We will pass the vector enclosed in <concept> tags into your context. You must then produce an explanation "
    "for the vector, enclosed within <explanation> tags. The explanation consists of 2-3 text snippets describing "
    "that vector.\n\nHere is the vector:\n\n<concept>{marker}</concept>\n\nPlease provide an explanation.";

const char* const kCriticTemplate = "Summary of the following text: <text>{description}</text> <summary>";

namespace {

// Replaces the one occurrence of `key`; InputError when it is missing (a template that cannot
// hold the marker or the description is unusable).
std::string fill(const std::string& text, const std::string& key, const std::string& value, const char* what) {
  auto at = text.find(key);
  NLA_CHECK_INPUT(at != std::string::npos, what, ": expected the placeholder ", key, " in '", text, "'");
  return text.substr(0, at) + value + text.substr(at + key.size());
}

}  // namespace

std::string av_user_text(const std::string& actor_template) {
  return fill(actor_template, "{marker}", kInjectionChar, "prompt_templates.actor");
}

AvPrompt av_prompt(const tokenizer::Tokenizer& tokenizer, const std::string& actor_template) {
  std::string text = tokenizer::render_chat({{"user", av_user_text(actor_template)}}, true);
  AvPrompt prompt;
  prompt.ids = tokenizer.encode(text);
  for (size_t i = 0; i < prompt.ids.size(); ++i) {
    if (prompt.ids[i] != kInjectionTokenId) continue;
    NLA_CHECK_INPUT(prompt.marker_position < 0, tokenizer.path(), ": the AV prompt holds the marker token ",
                    kInjectionTokenId, " more than once");
    prompt.marker_position = static_cast<int64_t>(i);
  }
  int64_t p = prompt.marker_position;
  NLA_CHECK_INPUT(p > 0 && p + 1 < static_cast<int64_t>(prompt.ids.size()), tokenizer.path(),
                  ": expected U+320E to encode as token ", kInjectionTokenId,
                  " (the Qwen2.5 tokenizer); it does not occur in the AV prompt");
  NLA_CHECK_INPUT(prompt.ids[p - 1] == kInjectionLeftNeighborId && prompt.ids[p + 1] == kInjectionRightNeighborId,
                  tokenizer.path(), ": expected the marker token between ids ", kInjectionLeftNeighborId, " and ",
                  kInjectionRightNeighborId, ", got ", prompt.ids[p - 1], " and ", prompt.ids[p + 1]);
  return prompt;
}

at::Tensor injection_vectors(const at::Tensor& h, double injection_scale) {
  NLA_CHECK_INPUT(injection_scale > 0, "injection_scale: expected > 0, got ", injection_scale);
  auto x = h.to(at::kFloat);                                      // (N, d)
  return x * (injection_scale / x.norm(2, {-1}, /*keepdim=*/true));  // (N, d)
}

std::string ar_input_text(const std::string& description, const std::string& critic_template) {
  return fill(critic_template, "{description}", description, "prompt_templates.critic");
}

std::vector<tokenizer::TokenId> ar_input_ids(const tokenizer::Tokenizer& tokenizer, const std::string& description,
                                             const std::string& critic_template) {
  return tokenizer.encode(ar_input_text(description, critic_template));
}

}  // namespace nla::autoencoder
