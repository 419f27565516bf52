// The AV prompt and the AR input (DESIGN section 1), and the injection rescaling.
#include "nla/autoencoder/prompts.hpp"

#include <ATen/ATen.h>

#include "nla/core/error.hpp"

namespace nla::autoencoder {

const char* const kActorTemplate =
    "You are a meticulous AI researcher conducting an important investigation into activation vectors from a "
    "language model. Your overall task is to describe the semantic content of that activation vector.\n\n"
    "We will pass the vector enclosed in <concept> tags into your context. You must then produce an explanation "
    "for the vector, enclosed within <explanation> tags. The explanation consists of 2-3 text snippets describing "
    "that vector.\n\nHere is the vector:\n\n<concept>{injection_char}</concept>\n\nPlease provide an explanation.";

const char* const kCriticTemplate = "Summary of the following text: <text>{explanation}</text> <summary>";

namespace {

// Python's str.format with one keyword, as the authors' loader applies it
// (`actor_template.format(injection_char=...)`): every `{name}` whose name is `key` (or a
// legacy alias nla wrote before 2026-12: `{marker}`, `{description}`) takes `value`, `{{` and
// `}}` are literal braces, and any other field is an error (Python raises KeyError there).
// InputError when the placeholder is missing: such a template cannot hold its input.
std::string format_template(const std::string& text, const std::string& key, const std::string& legacy_key,
                            const std::string& value, const char* what) {
  std::string out;
  bool filled = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if ((c == '{' || c == '}') && i + 1 < text.size() && text[i + 1] == c) {
      out += c;  // an escaped brace
      ++i;
      continue;
    }
    NLA_CHECK_INPUT(c != '}', what, ": unmatched '}' at offset ", i, " in '", text, "'");
    if (c != '{') {
      out += c;
      continue;
    }
    const size_t close = text.find('}', i + 1);
    NLA_CHECK_INPUT(close != std::string::npos, what, ": unmatched '{' at offset ", i, " in '", text, "'");
    const std::string name = text.substr(i + 1, close - i - 1);
    NLA_CHECK_INPUT(name == key || name == legacy_key, what, ": unexpected placeholder {", name,
                    "}; expected {", key, "} in '", text, "'");
    out += value;
    filled = true;
    i = close;
  }
  NLA_CHECK_INPUT(filled, what, ": expected the placeholder {", key, "} in '", text, "'");
  return out;
}

}  // namespace

std::string av_user_text(const std::string& actor_template) {
  return format_template(actor_template, "injection_char", "marker", kInjectionChar, "prompt_templates.actor");
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

std::string ar_input_text(const std::string& explanation, const std::string& critic_template) {
  return format_template(critic_template, "explanation", "description", explanation, "prompt_templates.critic");
}

std::vector<tokenizer::TokenId> ar_input_ids(const tokenizer::Tokenizer& tokenizer, const std::string& description,
                                             const std::string& critic_template) {
  return tokenizer.encode(ar_input_text(description, critic_template));
}

}  // namespace nla::autoencoder
