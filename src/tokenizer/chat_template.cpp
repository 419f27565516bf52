// render_chat: the Qwen2.5 chat template of tokenizer_config.json (the branch without
// tools), written out by hand. The Jinja source, for the record:
//   {%- if messages[0]['role'] == 'system' %}
//       {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
//   {%- else %}
//       {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
//   {%- endif %}
//   {%- for message in messages %}
//       {%- if (message.role == "user") or (message.role == "system" and not loop.first) or
//              (message.role == "assistant" and not message.tool_calls) %}
//           {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
//       {%- elif message.role == "tool" %}
//           {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}{{- '<|im_start|>user' }}{%- endif %}
//           {{- '\n<tool_response>\n' }}{{- message.content }}{{- '\n</tool_response>' }}
//           {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}{{- '<|im_end|>\n' }}{%- endif %}
//       {%- endif %}
//   {%- endfor %}
//   {%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}
#include "nla/core/error.hpp"
#include "nla/tokenizer/tokenizer.hpp"

namespace nla::tokenizer {

std::string render_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  // The template reads messages[0]: Jinja fails on an empty conversation, so do we.
  NLA_CHECK_INPUT(!messages.empty(), "render_chat: expected at least one message");
  std::string out;
  if (messages[0].role == "system") out += "<|im_start|>system\n" + messages[0].content + "<|im_end|>\n";
  else out += "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n";
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& message = messages[i];
    if (message.role == "system" && i == 0) continue;  // rendered above
    if (message.role == "user" || message.role == "system" || message.role == "assistant") {
      out += "<|im_start|>" + message.role + "\n" + message.content + "<|im_end|>\n";
    } else if (message.role == "tool") {
      if (i == 0 || messages[i - 1].role != "tool") out += "<|im_start|>user";
      out += "\n<tool_response>\n" + message.content + "\n</tool_response>";
      if (i + 1 == messages.size() || messages[i + 1].role != "tool") out += "<|im_end|>\n";
    } else {
      // The template silently drops other roles; a typo should not vanish from a prompt.
      NLA_INPUT_ERROR("render_chat: messages[", i, "].role: expected system, user, assistant or tool, got '",
                      message.role, "'");
    }
  }
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

}  // namespace nla::tokenizer
