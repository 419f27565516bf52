// The offline labelers of `nla label`: context snippets and given texts.
#include "nla/label/labelers.hpp"

#include <fstream>
#include <nlohmann/json.hpp>

#include "nla/core/error.hpp"

namespace nla::label {

namespace {

// Collapses whitespace runs (newlines included) to one space and trims: snippets are one line.
std::string one_line(const std::string& text) {
  std::string out;
  bool space = false;
  for (char c : text) {
    if (c == ' ' || c == '\n' || c == '\t' || c == '\r') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

}  // namespace

std::string answer_format(const std::vector<std::string>& snippets) {
  std::string text = "<explanation>\n";
  for (const auto& snippet : snippets) text += snippet + "\n";
  return text + "</explanation>";
}

std::vector<std::string> context_descriptions(const store::ActivationStore& acts, const tokenizer::Tokenizer& tok,
                                              int64_t first, int64_t count, const ContextLabelerOptions& options) {
  NLA_CHECK(first >= 0 && count >= 0 && first + count <= acts.n_samples(), "rows out of range");
  std::vector<std::string> descriptions;
  descriptions.reserve(count);
  int64_t cached_document = -1;
  std::vector<tokenizer::TokenId> tokens;
  std::string source;
  for (int64_t row = first; row < first + count; ++row) {
    int64_t document = acts.sample_document(row);
    if (document != cached_document) {  // rows are ordered by document: tokenise each once
      tokens = tok.encode(acts.document_text(document));
      source = acts.document_source(document);
      cached_document = document;
    }
    int64_t position = acts.sample_position(row);
    NLA_CHECK_INPUT(position < static_cast<int64_t>(tokens.size()) && tokens[position] == acts.sample_token(row),
                    acts.path(), ": sample ", row, ": token at position ", position,
                    " differs from the store's (was the store made with another tokenizer?)");
    int64_t start = std::max<int64_t>(0, position - options.context_tokens);
    std::vector<tokenizer::TokenId> before(tokens.begin() + start, tokens.begin() + position);
    std::string current = tok.decode({tokens[position]});
    descriptions.push_back(answer_format({
        "Text just before: \"" + one_line(tok.decode(before)) + "\"",
        "Current token: \"" + one_line(current) + "\"",
        "Domain: " + (source.empty() ? std::string("unknown") : source),
    }));
  }
  return descriptions;
}

std::vector<std::string> jsonl_descriptions(const std::string& path, int64_t n_samples) {
  std::ifstream in(path);
  NLA_CHECK_INPUT(in, path, ": cannot open for reading");
  std::vector<std::string> descriptions(n_samples);
  std::vector<bool> seen(n_samples, false);
  std::string line;
  int64_t line_number = 0, next_row = 0;
  while (std::getline(in, line)) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json record;
    try {
      record = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception&) {
      NLA_INPUT_ERROR(path, ":", line_number, ": not valid JSON");
    }
    NLA_CHECK_INPUT(record.is_object() && record.contains("description") && record["description"].is_string(), path,
                    ":", line_number, ": field 'description': expected a string");
    int64_t row = next_row;
    if (record.contains("row")) {
      NLA_CHECK_INPUT(record["row"].is_number_integer(), path, ":", line_number, ": field 'row': expected an integer");
      row = record["row"].get<int64_t>();
    }
    NLA_CHECK_INPUT(row >= 0 && row < n_samples, path, ":", line_number, ": field 'row': expected 0..", n_samples - 1,
                    ", got ", row);
    NLA_CHECK_INPUT(!seen[row], path, ":", line_number, ": row ", row, " given twice");
    seen[row] = true;
    descriptions[row] = record["description"].get<std::string>();
    next_row = row + 1;
  }
  for (int64_t row = 0; row < n_samples; ++row)
    NLA_CHECK_INPUT(seen[row], path, ": row ", row, " has no description (expected one per sample, ", n_samples, ")");
  return descriptions;
}

}  // namespace nla::label
