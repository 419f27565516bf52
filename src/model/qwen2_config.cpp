// config.json of Qwen2ForCausalLM: parsing, validation, writing, presets.
#include "nla/model/qwen2_config.hpp"

#include <nlohmann/json.hpp>

#include "nla/core/atomic_file.hpp"
#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"

namespace nla::model {

namespace {

using Json = nlohmann::json;

int64_t get_int(const Json& json, const char* key, const std::string& source, bool required, int64_t fallback) {
  auto it = json.find(key);
  if (it == json.end() || it->is_null()) {
    NLA_CHECK_INPUT(!required, source, ": missing key '", key, "'");
    return fallback;
  }
  NLA_CHECK_INPUT(it->is_number_integer(), source, ": key '", key, "': expected an integer, got ", it->dump());
  int64_t value = it->get<int64_t>();
  NLA_CHECK_INPUT(value > 0, source, ": key '", key, "': expected a positive integer, got ", value);
  return value;
}

double get_double(const Json& json, const char* key, const std::string& source, bool required, double fallback) {
  auto it = json.find(key);
  if (it == json.end() || it->is_null()) {
    NLA_CHECK_INPUT(!required, source, ": missing key '", key, "'");
    return fallback;
  }
  NLA_CHECK_INPUT(it->is_number(), source, ": key '", key, "': expected a number, got ", it->dump());
  double value = it->get<double>();
  NLA_CHECK_INPUT(value > 0, source, ": key '", key, "': expected a positive number, got ", value);
  return value;
}

}  // namespace

int64_t Qwen2Config::num_parameters() const {
  int64_t c = hidden_size, kv = num_key_value_heads * head_dim();
  int64_t attention = c * c + c + 2 * (c * kv + kv) + c * c;
  int64_t mlp = 3 * c * intermediate_size;
  int64_t block = attention + mlp + 2 * c;
  return vocab_size * c * (tie_word_embeddings ? 1 : 2) + num_hidden_layers * block + c;
}

Qwen2Config Qwen2Config::from_json_text(const std::string& text, const std::string& source) {
  Json json = Json::parse(text, nullptr, false);
  NLA_CHECK_INPUT(!json.is_discarded(), source, ": not valid JSON");
  NLA_CHECK_INPUT(json.is_object(), source, ": expected a JSON object");

  // Refuse what this implementation does not compute.
  if (auto it = json.find("architectures"); it != json.end() && it->is_array()) {
    bool qwen2 = false;
    for (const auto& name : *it) qwen2 = qwen2 || name == "Qwen2ForCausalLM";
    NLA_CHECK_INPUT(qwen2, source, ": key 'architectures': expected Qwen2ForCausalLM, got ", it->dump());
  }
  if (auto it = json.find("model_type"); it != json.end())
    NLA_CHECK_INPUT(*it == "qwen2", source, ": key 'model_type': expected \"qwen2\", got ", it->dump());
  if (auto it = json.find("rope_scaling"); it != json.end())
    NLA_CHECK_INPUT(it->is_null(), source, ": key 'rope_scaling': not supported (expected null), got ", it->dump());
  if (auto it = json.find("use_sliding_window"); it != json.end())
    NLA_CHECK_INPUT(*it == false, source, ": key 'use_sliding_window': sliding-window attention is not supported");
  if (auto it = json.find("hidden_act"); it != json.end())
    NLA_CHECK_INPUT(*it == "silu", source, ": key 'hidden_act': only \"silu\" is supported, got ", it->dump());
  if (auto it = json.find("attention_dropout"); it != json.end())
    NLA_CHECK_INPUT(it->is_number() && it->get<double>() == 0.0, source,
                    ": key 'attention_dropout': only 0 is supported, got ", it->dump());

  Qwen2Config config;
  config.hidden_size = get_int(json, "hidden_size", source, true, 0);
  config.intermediate_size = get_int(json, "intermediate_size", source, true, 0);
  config.num_hidden_layers = get_int(json, "num_hidden_layers", source, true, 0);
  config.num_attention_heads = get_int(json, "num_attention_heads", source, true, 0);
  config.num_key_value_heads = get_int(json, "num_key_value_heads", source, true, 0);
  config.vocab_size = get_int(json, "vocab_size", source, true, 0);
  config.rms_norm_eps = get_double(json, "rms_norm_eps", source, true, 0);
  config.rope_theta = get_double(json, "rope_theta", source, true, 0);
  config.max_position_embeddings = get_int(json, "max_position_embeddings", source, false, 32768);
  if (auto it = json.find("tie_word_embeddings"); it != json.end()) {
    NLA_CHECK_INPUT(it->is_boolean(), source, ": key 'tie_word_embeddings': expected true or false, got ", it->dump());
    config.tie_word_embeddings = it->get<bool>();
  }
  if (auto it = json.find("torch_dtype"); it != json.end() && !it->is_null()) {
    NLA_CHECK_INPUT(*it == "float32" || *it == "bfloat16" || *it == "float16", source,
                    ": key 'torch_dtype': expected float32, bfloat16 or float16, got ", it->dump());
    config.torch_dtype = it->get<std::string>();
  }
  if (auto it = json.find("bos_token_id"); it != json.end() && it->is_number_integer()) config.bos_token_id = *it;
  if (auto it = json.find("eos_token_id"); it != json.end() && it->is_number_integer()) config.eos_token_id = *it;

  NLA_CHECK_INPUT(config.hidden_size % config.num_attention_heads == 0, source, ": key 'num_attention_heads': ",
                  config.num_attention_heads, " does not divide hidden_size ", config.hidden_size);
  NLA_CHECK_INPUT(config.num_attention_heads % config.num_key_value_heads == 0, source,
                  ": key 'num_key_value_heads': ", config.num_key_value_heads, " does not divide num_attention_heads ",
                  config.num_attention_heads);
  NLA_CHECK_INPUT(config.head_dim() % 2 == 0, source, ": head dimension ", config.head_dim(),
                  " (hidden_size / num_attention_heads) must be even for rotary embeddings");
  if (auto it = json.find("head_dim"); it != json.end() && !it->is_null())
    NLA_CHECK_INPUT(*it == config.head_dim(), source, ": key 'head_dim': ", it->dump(),
                    " differs from hidden_size / num_attention_heads = ", config.head_dim(), " (not supported)");
  return config;
}

Qwen2Config Qwen2Config::from_file(const std::string& path) {
  std::string file = fs::is_directory(path) ? path + "/config.json" : path;
  return from_json_text(read_file(file), file);
}

std::string Qwen2Config::to_json_text() const {
  nlohmann::ordered_json json = {
      {"architectures", {"Qwen2ForCausalLM"}},
      {"attention_dropout", 0.0},
      {"bos_token_id", bos_token_id},
      {"eos_token_id", eos_token_id},
      {"hidden_act", "silu"},
      {"hidden_size", hidden_size},
      {"initializer_range", 0.02},
      {"intermediate_size", intermediate_size},
      {"max_position_embeddings", max_position_embeddings},
      {"max_window_layers", num_hidden_layers},
      {"model_type", "qwen2"},
      {"num_attention_heads", num_attention_heads},
      {"num_hidden_layers", num_hidden_layers},
      {"num_key_value_heads", num_key_value_heads},
      {"rms_norm_eps", rms_norm_eps},
      {"rope_scaling", nullptr},
      {"rope_theta", rope_theta},
      {"sliding_window", max_position_embeddings},
      {"tie_word_embeddings", tie_word_embeddings},
      {"torch_dtype", torch_dtype},
      {"transformers_version", "4.43.1"},
      {"use_cache", true},
      {"use_sliding_window", false},
      {"vocab_size", vocab_size},
  };
  return json.dump(2) + "\n";
}

std::vector<std::string> qwen2_preset_names() { return {"tiny", "small", "qwen2.5-0.5b", "qwen2.5-7b"}; }

Qwen2Config qwen2_preset(const std::string& name) {
  Qwen2Config c;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 1000000.0;
  // tiny and small keep the real Qwen2.5 vocabulary so the real tokenizer works with them.
  c.vocab_size = 151936;
  if (name == "tiny") {  // tests: seconds on one core
    c.hidden_size = 64;
    c.intermediate_size = 160;
    c.num_hidden_layers = 4;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.max_position_embeddings = 4096;
    c.tie_word_embeddings = true;
  } else if (name == "small") {  // benchmarks and the demo
    c.hidden_size = 512;
    c.intermediate_size = 1536;
    c.num_hidden_layers = 8;
    c.num_attention_heads = 8;
    c.num_key_value_heads = 2;
    c.max_position_embeddings = 32768;
    c.tie_word_embeddings = true;
  } else if (name == "qwen2.5-0.5b") {  // Qwen/Qwen2.5-0.5B-Instruct config.json
    c.hidden_size = 896;
    c.intermediate_size = 4864;
    c.num_hidden_layers = 24;
    c.num_attention_heads = 14;
    c.num_key_value_heads = 2;
    c.max_position_embeddings = 32768;
    c.tie_word_embeddings = true;
    c.torch_dtype = "bfloat16";
    c.eos_token_id = 151645;  // <|im_end|>
  } else if (name == "qwen2.5-7b") {  // Qwen/Qwen2.5-7B-Instruct config.json
    c.hidden_size = 3584;
    c.intermediate_size = 18944;
    c.num_hidden_layers = 28;
    c.num_attention_heads = 28;
    c.num_key_value_heads = 4;
    c.vocab_size = 152064;
    c.max_position_embeddings = 32768;
    c.tie_word_embeddings = false;
    c.torch_dtype = "bfloat16";
    c.eos_token_id = 151645;
  } else {
    std::string names;
    for (const auto& preset : qwen2_preset_names()) names += (names.empty() ? "" : ", ") + preset;
    NLA_INPUT_ERROR("option 'preset': expected one of ", names, ", got '", name, "'");
  }
  return c;
}

}  // namespace nla::model
