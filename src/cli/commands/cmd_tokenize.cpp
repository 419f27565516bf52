// nla tokenize: JSONL {"text": ...} in, JSONL {"ids": [...]} out, one output line per input
// line and in order, with a Hugging Face tokenizer.json. --chat renders each text as one
// user turn of the chat template (generation prompt added) first. A bad line stops the run
// with "<input>:<line>: ..." and exit 2, leaving no output behind; a provenance sidecar
// <output>.meta.json records what made the output.
#include <fstream>
#include <nlohmann/json.hpp>

#include "nla/cli/command.hpp"
#include "nla/core/atomic_file.hpp"
#include "nla/core/error.hpp"
#include "nla/core/log.hpp"
#include "nla/core/world.hpp"
#include "nla/tokenizer/tokenizer.hpp"

namespace nla::cli {

struct TokenizeOptions {
  std::string tokenizer = "models/tokenizer.json";
  std::string input;
  std::string output;
  std::string field = "text";
  bool chat = false;
};

class TokenizeCommand : public Command {
 public:
  std::string name() const override { return "tokenize"; }
  std::string summary() const override {
    return "JSONL {\"text\": ...} in, JSONL {\"ids\": [...]} out, with a model's tokenizer.json";
  }

  void declare(OptionSet& options) override {
    options.add("tokenize", "tokenizer", &options_.tokenizer, "tokenizer.json, or a model directory holding one");
    options.add("tokenize", "input", &options_.input, "input JSONL, one object with a text field per line");
    options.add("tokenize", "output", &options_.output, "output JSONL, {\"ids\": [...]} per input line");
    options.add("tokenize", "field", &options_.field, "name of the text field of the input objects");
    options.add("tokenize", "chat", &options_.chat,
                "render each text as one user turn of the chat template (with the generation prompt) first");
  }

  void run(const RunContext& context) override {
    run_on_root(MPI_COMM_WORLD, [&] { tokenize(context); });
  }

 private:
  void tokenize(const RunContext& context) {
    NLA_CHECK_INPUT(!options_.input.empty(), "option 'input': expected a JSONL file");
    NLA_CHECK_INPUT(!options_.output.empty(), "option 'output': expected a file name");
    NLA_CHECK_INPUT(!options_.field.empty(), "option 'field': expected a field name");
    auto tok = tokenizer::Tokenizer::from_file(bundled_file(options_.tokenizer));
    std::ifstream in(options_.input, std::ios::binary);
    NLA_CHECK_INPUT(in, options_.input, ": cannot read the file");

    AtomicFile out(options_.output);
    std::string line, text, buffer;
    int64_t lines = 0, tokens = 0;
    while (std::getline(in, line)) {
      ++lines;
      if (!line.empty() && line.back() == '\r') line.pop_back();  // CRLF files
      text = read_text(line, lines);
      if (options_.chat) text = tokenizer::render_chat({{"user", text}}, true);
      auto ids = tok.encode(text);
      tokens += static_cast<int64_t>(ids.size());
      buffer = "{\"ids\": [";
      for (size_t i = 0; i < ids.size(); ++i) {
        if (i) buffer += ", ";
        buffer += std::to_string(ids[i]);
      }
      buffer += "]}\n";
      out.stream() << buffer;
    }
    NLA_CHECK_INPUT(!in.bad(), options_.input, ": read error after line ", lines);
    out.commit();
    nlohmann::json meta = {{"provenance", nlohmann::json::parse(context.provenance_json())},
                           {"tokenizer", tok.path()},
                           {"tokenizer_sha256", tok.sha256()},
                           {"input", options_.input},
                           {"field", options_.field},
                           {"chat", options_.chat},
                           {"lines", lines},
                           {"tokens", tokens}};
    write_file_atomic(options_.output + ".meta.json", meta.dump(2) + "\n");
    log_info("tokenized %lld lines into %lld tokens: %s", static_cast<long long>(lines),
             static_cast<long long>(tokens), options_.output.c_str());
  }

  // The text field of one input line; InputError "<input>:<line>: ..." otherwise.
  std::string read_text(const std::string& line, int64_t line_number) const {
    const std::string where = options_.input + ":" + std::to_string(line_number);
    nlohmann::json object;
    try {
      object = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      NLA_INPUT_ERROR(where, ": expected a JSON object (", line.empty() ? "empty line" : "not valid JSON", ", byte ",
                      e.byte, ")");
    }
    NLA_CHECK_INPUT(object.is_object(), where, ": expected a JSON object, got ", object.type_name());
    auto it = object.find(options_.field);
    NLA_CHECK_INPUT(it != object.end() && it->is_string(), where, ": field '", options_.field, "': expected a string");
    return it->get<std::string>();
  }

  TokenizeOptions options_;
};

std::unique_ptr<Command> make_tokenize_command() { return std::make_unique<TokenizeCommand>(); }

}  // namespace nla::cli
