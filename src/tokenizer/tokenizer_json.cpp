// Loading a Hugging Face tokenizer.json: the BPE model (vocabulary, merges in both file
// formats), added tokens, normalizer, pre-tokenizer and decoder. Every field is checked
// and a bad one is reported as "<file>: <field>: expected ...".
#include <nlohmann/json.hpp>

#include "byte_level.hpp"
#include "model.hpp"
#include "nla/core/error.hpp"
#include "nla/core/log.hpp"
#include "utf8.hpp"

namespace nla::tokenizer::detail {

namespace {

using Json = nlohmann::json;

class Loader {
 public:
  Loader(const std::string& path, TokenizerModel& model) : path_(path), model_(model) {}

  [[noreturn]] void fail(const std::string& field, const std::string& expected) const {
    NLA_INPUT_ERROR(path_, ": ", field, ": expected ", expected);
  }

  const Json& member(const Json& object, const std::string& field, const char* key) const {
    auto it = object.find(key);
    if (it == object.end()) fail(field + "." + key, "a value (missing)");
    return *it;
  }

  // Optional member: null when absent.
  const Json& optional(const Json& object, const char* key) const {
    static const Json null;
    auto it = object.find(key);
    return it == object.end() ? null : *it;
  }

  bool optional_bool(const Json& object, const std::string& field, const char* key, bool fallback) const {
    const Json& value = optional(object, key);
    if (value.is_null()) return fallback;
    if (!value.is_boolean()) fail(field + "." + key, "true or false");
    return value.get<bool>();
  }

  static std::string type_of(const Json& value) {
    auto it = value.is_object() ? value.find("type") : value.end();
    return it != value.end() && it->is_string() ? it->get<std::string>() : "";
  }

  void load(std::string_view text) {
    Json root;
    try {
      root = Json::parse(text.begin(), text.end());
    } catch (const Json::parse_error& e) {
      NLA_INPUT_ERROR(path_, ": expected JSON: ", e.what());
    }
    if (!root.is_object()) fail("(top level)", "a JSON object");
    load_model(member(root, "", "model"));
    load_normalizer(optional(root, "normalizer"));
    load_added_tokens(optional(root, "added_tokens"));
    load_pre_tokenizer(optional(root, "pre_tokenizer"));
    load_decoder(optional(root, "decoder"));
    build_matchers();
    build_decoded_bytes();
  }

 private:
  void set_token(TokenId id, const std::string& token, uint8_t flags) {
    if (static_cast<size_t>(id) >= model_.id_tokens.size()) {
      model_.id_tokens.resize(static_cast<size_t>(id) + 1);
      model_.id_flags.resize(static_cast<size_t>(id) + 1, 0);
    }
    model_.id_tokens[id] = token;
    model_.id_flags[id] = flags;
  }

  static TokenId as_id(const Json& value) {
    if (!value.is_number_integer()) return -1;
    auto id = value.get<int64_t>();
    return id >= 0 && id < (int64_t(1) << 30) ? static_cast<TokenId>(id) : -1;
  }

  void check_utf8(const std::string& field, const std::string& text) const {
    if (find_invalid_utf8(text) != std::string::npos) fail(field, "valid UTF-8");
  }

  void load_model(const Json& model) {
    if (!model.is_object()) fail("model", "an object");
    std::string type = type_of(model);
    if (!type.empty() && type != "BPE") fail("model.type", "\"BPE\", got \"" + type + "\"");
    if (!optional(model, "dropout").is_null()) fail("model.dropout", "null (BPE dropout is not supported)");
    if (optional_bool(model, "model", "byte_fallback", false)) fail("model.byte_fallback", "false");
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      const Json& value = optional(model, key);
      if (!value.is_null() && !(value.is_string() && value.get<std::string>().empty()))
        fail(std::string("model.") + key, "null or \"\"");
    }
    model_.ignore_merges = optional_bool(model, "model", "ignore_merges", false);

    const Json& vocab = member(model, "model", "vocab");
    if (!vocab.is_object()) fail("model.vocab", "an object of token -> id");
    model_.token_ids.reserve(2 * vocab.size() + 1024);
    model_.id_tokens.reserve(vocab.size() + 1024);
    model_.id_flags.reserve(vocab.size() + 1024);
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      TokenId id = as_id(it.value());
      if (id < 0) fail("model.vocab[" + Json(it.key()).dump() + "]", "a non-negative integer id");
      set_token(id, it.key(), TokenizerModel::k_present);
      model_.token_ids[it.key()] = id;
    }
    model_vocab_size_ = vocab.size();

    std::array<TokenId, 256> byte_ids{};
    const auto& chars = byte_to_chars();
    for (int b = 0; b < 256; ++b) {
      auto it = model_.token_ids.find(chars[b]);
      if (it == model_.token_ids.end()) {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02X", b);
        fail("model.vocab", "the byte-level token \"" + chars[b] + "\" of byte " + hex + " (not a byte-level BPE vocabulary)");
      }
      byte_ids[b] = it->second;
    }

    const Json& merges = member(model, "model", "merges");
    if (!merges.is_array()) fail("model.merges", "an array");
    std::vector<Merge> table;
    table.reserve(merges.size());
    std::string left, right;
    for (size_t i = 0; i < merges.size(); ++i) {
      const Json& entry = merges[i];
      std::string field = "model.merges[" + std::to_string(i) + "]";
      if (entry.is_string()) {
        const std::string& line = entry.get_ref<const std::string&>();
        size_t space = line.find(' ');
        if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos)
          fail(field, "\"a b\" or [\"a\",\"b\"]");
        left.assign(line, 0, space);
        right.assign(line, space + 1);
      } else if (entry.is_array() && entry.size() == 2 && entry[0].is_string() && entry[1].is_string()) {
        left = entry[0].get<std::string>();
        right = entry[1].get<std::string>();
      } else {
        fail(field, "\"a b\" or [\"a\",\"b\"]");
      }
      auto find = [&](const std::string& token) {
        auto it = model_.token_ids.find(token);
        if (it == model_.token_ids.end()) fail(field, "tokens of model.vocab, \"" + token + "\" is not one");
        return it->second;
      };
      table.push_back({find(left), find(right), find(left + right)});
    }
    model_.bpe = Bpe(byte_ids, table);
  }

  void load_added_tokens(const Json& added) {
    if (added.is_null()) return;
    if (!added.is_array()) fail("added_tokens", "an array");
    for (size_t i = 0; i < added.size(); ++i) {
      const Json& entry = added[i];
      std::string field = "added_tokens[" + std::to_string(i) + "]";
      if (!entry.is_object()) fail(field, "an object");
      AddedToken token;
      token.id = as_id(member(entry, field, "id"));
      if (token.id < 0) fail(field + ".id", "a non-negative integer id");
      const Json& content = member(entry, field, "content");
      if (!content.is_string() || content.get<std::string>().empty()) fail(field + ".content", "a non-empty string");
      token.content = content.get<std::string>();
      check_utf8(field + ".content", token.content);
      token.special = optional_bool(entry, field, "special", false);
      token.single_word = optional_bool(entry, field, "single_word", false);
      token.lstrip = optional_bool(entry, field, "lstrip", false);
      token.rstrip = optional_bool(entry, field, "rstrip", false);
      token.normalized = optional_bool(entry, field, "normalized", !token.special);  // tokenizers' default
      add_token(std::move(token), field);
    }
  }

  // tokenizers' AddedVocabulary::add_tokens: a token already in model.vocab keeps that id;
  // a new one gets the next id after the vocabulary and the tokens added before it. The id
  // written in the file is only checked (tokenizers warns too).
  void add_token(AddedToken token, const std::string& field) {
    for (const AddedToken& other : added_)
      if (other.content == token.content) return;  // a duplicate is ignored
    TokenId file_id = token.id;
    auto in_vocab = model_.token_ids.find(token.content);  // holds model.vocab and the tokens added so far
    if (in_vocab != model_.token_ids.end()) {
      token.id = in_vocab->second;
    } else {
      TokenId vocab_size = static_cast<TokenId>(model_vocab_size_);
      TokenId max_added = -1;
      for (const AddedToken& other : added_) max_added = std::max(max_added, other.id);
      token.id = max_added >= vocab_size || vocab_size == 0 ? max_added + 1 : vocab_size;
    }
    if (token.id != file_id)
      log_warn("%s: %s: token '%s' has id %d in the file but gets id %d (as in Hugging Face tokenizers)", path_.c_str(),
               field.c_str(), token.content.c_str(), file_id, token.id);
    // A normalized token is known by its normalized form when ids are turned back into text.
    std::string scratch;
    std::string shown(token.normalized ? model_.normalizer.normalize(token.content, scratch) : token.content);
    set_token(token.id, shown,
              TokenizerModel::k_present | TokenizerModel::k_added | (token.special ? TokenizerModel::k_special : 0));
    model_.token_ids[token.content] = token.id;
    added_.push_back(std::move(token));
  }

  void load_normalizer(const Json& normalizer) {
    if (normalizer.is_null()) return;
    std::string type = type_of(normalizer);
    if (type != "NFC") fail("normalizer", "null or {\"type\": \"NFC\"}, got " + normalizer.dump().substr(0, 80));
    model_.normalizer = Normalizer(Normalizer::Kind::nfc);
  }

  void check_byte_level(const Json& byte_level, const std::string& field, bool want_regex) {
    if (optional_bool(byte_level, field, "add_prefix_space", false))
      fail(field + ".add_prefix_space", "false (a prefix space is not supported)");
    if (optional_bool(byte_level, field, "use_regex", true) != want_regex)
      fail(field + ".use_regex", want_regex ? "true" : "false after a Split");
  }

  void load_pre_tokenizer(const Json& pre) {
    const char* expected =
        "{\"type\": \"Sequence\", \"pretokenizers\": [Split (Regex, Isolated), ByteLevel]} or {\"type\": \"ByteLevel\"}";
    std::string type = type_of(pre);
    if (type == "ByteLevel") {
      check_byte_level(pre, "pre_tokenizer", true);
      model_.pre_tokenizer = std::make_unique<PreTokenizer>(k_gpt2_pattern, path_ + ": pre_tokenizer");
      return;
    }
    if (type != "Sequence") fail("pre_tokenizer", expected);
    const Json& list = member(pre, "pre_tokenizer", "pretokenizers");
    if (!list.is_array() || list.size() != 2 || type_of(list[0]) != "Split" || type_of(list[1]) != "ByteLevel")
      fail("pre_tokenizer.pretokenizers", "[Split, ByteLevel]");
    const Json& split = list[0];
    const std::string field = "pre_tokenizer.pretokenizers[0]";
    const Json& pattern = member(split, field, "pattern");
    if (!pattern.is_object() || !pattern.contains("Regex") || !pattern["Regex"].is_string())
      fail(field + ".pattern", "{\"Regex\": \"...\"}");
    const Json& behavior = optional(split, "behavior");
    if (!behavior.is_string() || behavior.get<std::string>() != "Isolated") fail(field + ".behavior", "\"Isolated\"");
    if (optional_bool(split, field, "invert", false)) fail(field + ".invert", "false");
    check_byte_level(list[1], "pre_tokenizer.pretokenizers[1]", false);
    model_.pre_tokenizer =
        std::make_unique<PreTokenizer>(pattern["Regex"].get<std::string>(), path_ + ": " + field + ".pattern.Regex");
  }

  void load_decoder(const Json& decoder) {
    if (type_of(decoder) != "ByteLevel") fail("decoder", "{\"type\": \"ByteLevel\"}");
  }

  void build_matchers() {
    std::vector<AddedToken> raw, normalized;
    std::vector<std::string> raw_patterns, normalized_patterns;
    for (const AddedToken& token : added_) {
      if (token.normalized) {
        std::string scratch;
        normalized_patterns.emplace_back(model_.normalizer.normalize(token.content, scratch));
        normalized.push_back(token);
      } else {
        raw_patterns.push_back(token.content);
        raw.push_back(token);
      }
    }
    model_.raw_added = AddedTokenMatcher(std::move(raw), std::move(raw_patterns));
    model_.normalized_added = AddedTokenMatcher(std::move(normalized), std::move(normalized_patterns));
  }

  // The ByteLevel decoder maps each character of a token back to its byte; a token with a
  // character outside the byte map (an added token such as "日本") is kept as its UTF-8.
  void build_decoded_bytes() {
    const size_t n = model_.id_tokens.size();
    model_.decoded_offsets.assign(n + 1, 0);
    std::string& out = model_.decoded_bytes;
    std::string bytes;
    for (size_t id = 0; id < n; ++id) {
      model_.decoded_offsets[id] = static_cast<uint32_t>(out.size());
      const std::string& token = model_.id_tokens[id];
      bytes.clear();
      bool mapped = true;
      for (size_t i = 0; i < token.size() && mapped;) {
        uint32_t cp;
        i += decode_utf8(token, i, cp);
        int b = char_to_byte(cp);
        if (b < 0) mapped = false;
        else bytes += static_cast<char>(b);
      }
      out += mapped ? bytes : token;
    }
    model_.decoded_offsets[n] = static_cast<uint32_t>(out.size());
  }

  const std::string& path_;
  TokenizerModel& model_;
  std::vector<AddedToken> added_;
  size_t model_vocab_size_ = 0;  // entries of model.vocab (tokenizers' get_vocab_size)
};

}  // namespace

void load_tokenizer_json(const std::string& path, std::string_view json_text, TokenizerModel& model) {
  Loader(path, model).load(json_text);
}

}  // namespace nla::tokenizer::detail
