// nla generate: continue one prompt (text, optionally through the chat template, or ids)
// with the KV-cache generator; a quick check of a checkpoint. stdout gets the
// continuation, then a line "ids: ..." with its token ids.
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "device_options.hpp"
#include "nla/cli/command.hpp"
#include "nla/core/atomic_file.hpp"
#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/core/log.hpp"
#include "nla/core/world.hpp"
#include "nla/model/generate.hpp"
#include "nla/model/qwen2.hpp"
#include "nla/tokenizer/tokenizer.hpp"

namespace nla::cli {

namespace {

std::vector<int64_t> parse_ids(const std::string& text, const std::string& option) {
  std::string spaced = text;
  for (char& ch : spaced)
    if (ch == ',' || ch == '[' || ch == ']') ch = ' ';
  std::istringstream in(spaced);
  std::vector<int64_t> ids;
  std::string word;
  while (in >> word) {
    size_t used = 0;
    long long value = -1;
    try {
      value = std::stoll(word, &used);
    } catch (...) {
      used = 0;
    }
    NLA_CHECK_INPUT(used == word.size() && value >= 0, "option '", option, "': expected token ids, got '", word, "'");
    ids.push_back(value);
  }
  return ids;
}

// eos_token_id of generation_config.json (a number or a list), else of config.json.
std::vector<int64_t> default_stop_ids(const std::string& directory, int64_t config_eos) {
  std::string path = directory + "/generation_config.json";
  if (!fs::exists(path)) return {config_eos};
  auto json = nlohmann::json::parse(read_file(path), nullptr, false);
  NLA_CHECK_INPUT(!json.is_discarded() && json.is_object(), path, ": not a JSON object");
  auto it = json.find("eos_token_id");
  if (it == json.end() || it->is_null()) return {config_eos};
  std::vector<int64_t> ids;
  if (it->is_number_integer()) ids.push_back(it->get<int64_t>());
  else if (it->is_array())
    for (const auto& id : *it) {
      NLA_CHECK_INPUT(id.is_number_integer(), path, ": key 'eos_token_id': expected integers");
      ids.push_back(id.get<int64_t>());
    }
  else
    NLA_INPUT_ERROR(path, ": key 'eos_token_id': expected an integer or a list");
  return ids;
}

}  // namespace

class GenerateCommand : public Command {
 public:
  std::string name() const override { return "generate"; }
  std::string summary() const override {
    return "continue a prompt with the KV-cache generator (prints the text, then 'ids: ...')";
  }

  void declare(OptionSet& options) override {
    options.add("generate", "model", &model_, "checkpoint directory (config.json, safetensors, tokenizer.json)");
    options.add("generate", "prompt", &prompt_, "prompt text (with --ids: token ids, e.g. \"1,2,3\")");
    options.add("generate", "chat", &chat_, "wrap the prompt in the chat template as one user turn");
    options.add("generate", "ids", &ids_, "the prompt is token ids");
    options.add("generate", "max-new-tokens", &max_new_tokens_, "new tokens at most");
    options.add("generate", "temperature", &temperature_, "sampling temperature (0: greedy)");
    options.add("generate", "top-p", &top_p_, "nucleus sampling mass (1: off)");
    options.add("generate", "seed", &seed_, "sampling seed");
    options.add("generate", "stop", &stop_, "stop token ids (\"\": eos_token_id of generation_config.json)");
    declare_device_options(options, "generate", device_, precision_);
  }

  void run(const RunContext& context) override {
    const auto compute = dist::resolve_compute(device_, precision_);  // collective: every rank is here
    NLA_CHECK_INPUT(!model_.empty(), "option 'model': a checkpoint directory is required");
    NLA_CHECK_INPUT(max_new_tokens_ >= 1, "option 'max-new-tokens': expected >= 1, got ", max_new_tokens_);
    NLA_CHECK_INPUT(temperature_ >= 0, "option 'temperature': expected >= 0, got ", temperature_);
    NLA_CHECK_INPUT(top_p_ > 0 && top_p_ <= 1, "option 'top-p': expected in (0, 1], got ", top_p_);
    NLA_CHECK_INPUT(!(ids_ && chat_), "options 'ids' and 'chat' exclude each other");
    run_on_root(MPI_COMM_WORLD, [&] {
      model::LoadOptions load;
      load.device = compute.device;
      load.dtype = compute.dtype;
      // Config and tokenizer first: cheap checks before the weights are read.
      model::Qwen2Config config = model::Qwen2Config::from_file(model_);
      std::optional<tokenizer::Tokenizer> tok;
      std::string tokenizer_path = model_ + "/tokenizer.json";
      if (fs::exists(tokenizer_path)) tok = tokenizer::Tokenizer::from_file(tokenizer_path);
      NLA_CHECK_INPUT(ids_ || tok, tokenizer_path, ": no such file (needed for a text prompt; or pass --ids)");

      std::vector<int64_t> prompt_ids;
      if (ids_) {
        prompt_ids = parse_ids(prompt_, "prompt");
      } else {
        std::string text = chat_ ? tokenizer::render_chat({{"user", prompt_}}, true) : prompt_;
        for (auto id : tok->encode(text)) prompt_ids.push_back(id);
      }
      NLA_CHECK_INPUT(!prompt_ids.empty(), "option 'prompt': empty prompt");
      for (int64_t id : prompt_ids)
        NLA_CHECK_INPUT(id < config.vocab_size, "option 'prompt': token id ", id, " outside the vocabulary (",
                        config.vocab_size, " tokens in ", model_, "/config.json)");
      std::vector<int64_t> stop = stop_.empty() ? default_stop_ids(model_, config.eos_token_id) : parse_ids(stop_, "stop");

      model::Qwen2Model model = model::Qwen2Model::load(model_, load);
      model::GenerationOptions options;
      options.max_new_tokens = max_new_tokens_;
      options.temperature = temperature_;
      options.top_p = top_p_;
      options.seed = static_cast<uint64_t>(seed_);
      options.stop_token_ids = stop;
      model::GenerationPrompt prompt;
      prompt.ids = prompt_ids;
      auto result = model::generate(model, {prompt}, options);
      const auto& tokens = result.tokens[0];
      std::string ids_text;
      for (int64_t id : tokens) ids_text += (ids_text.empty() ? "" : " ") + std::to_string(id);
      if (tok) {
        std::vector<tokenizer::TokenId> out(tokens.begin(), tokens.end());
        std::printf("%s\n", tok->decode(out).c_str());
      }
      std::printf("ids: %s\n", ids_text.c_str());
      std::fflush(stdout);
      log_info("%zu prompt tokens, %zu new tokens, finished by %s | device %s, precision %s", prompt_ids.size(),
               tokens.size(), result.finish_reasons[0].c_str(), compute.device_label().c_str(),
               compute.precision_label().c_str());
      (void)context;
    });
  }

 private:
  std::string model_;
  std::string prompt_;
  bool chat_ = false;
  bool ids_ = false;
  int64_t max_new_tokens_ = 32;
  double temperature_ = 0.0;
  double top_p_ = 1.0;
  int64_t seed_ = 0;
  std::string stop_;
  std::string device_ = "auto";
  std::string precision_ = "auto";
};

std::unique_ptr<Command> make_generate_command() { return std::make_unique<GenerateCommand>(); }

}  // namespace nla::cli
