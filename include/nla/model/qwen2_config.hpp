// Hyper-parameters of a Qwen2ForCausalLM checkpoint (config.json), with Hugging Face's
// names, and the named presets of `nla init-model`. Features this model does not
// implement (rope_scaling, sliding-window attention, other activations) are refused with
// an InputError naming the file and the key, never silently ignored.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace nla::model {

struct Qwen2Config {
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 32768;
  double rms_norm_eps = 1e-6;
  double rope_theta = 1000000.0;
  bool tie_word_embeddings = false;
  std::string torch_dtype = "float32";  // "float32" | "bfloat16" | "float16"
  int64_t bos_token_id = 151643;        // <|endoftext|>
  int64_t eos_token_id = 151643;

  int64_t head_dim() const { return hidden_size / num_attention_heads; }
  // Parameters (embedding and head counted once each; a tied head is not counted twice).
  int64_t num_parameters() const;

  // Parses and validates; `source` names the file in messages.
  static Qwen2Config from_json_text(const std::string& text, const std::string& source);
  static Qwen2Config from_file(const std::string& path);  // config.json or a directory holding one
  // config.json text as transformers writes it for Qwen2ForCausalLM.
  std::string to_json_text() const;
};

// "tiny" | "small" | "qwen2.5-0.5b" | "qwen2.5-7b"; InputError naming the option otherwise.
Qwen2Config qwen2_preset(const std::string& name);
std::vector<std::string> qwen2_preset_names();

}  // namespace nla::model
