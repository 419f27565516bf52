// The offline labelers of `nla label`: context snippets and given texts.
#include "nla/label/labelers.hpp"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "nla/core/error.hpp"
#include "nla/label/sample_context.hpp"

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

std::vector<std::string> parse_context_fields(const std::string& list) {
  std::vector<bool> chosen(kContextFields.size(), false);
  size_t begin = 0;
  while (true) {
    const size_t end = list.find(',', begin);
    const std::string name = list.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
    const auto known = std::find(kContextFields.begin(), kContextFields.end(), name);
    NLA_CHECK_INPUT(known != kContextFields.end(), "option 'fields': expected a comma-separated subset of "
                    "before,token,domain, got '", list, "'");
    const size_t index = static_cast<size_t>(known - kContextFields.begin());
    NLA_CHECK_INPUT(!chosen[index], "option 'fields': '", name, "' given twice in '", list, "'");
    chosen[index] = true;
    if (end == std::string::npos) break;
    begin = end + 1;
  }
  std::vector<std::string> fields;
  for (size_t i = 0; i < kContextFields.size(); ++i)
    if (chosen[i]) fields.push_back(kContextFields[i]);
  return fields;
}

std::vector<std::string> context_descriptions(const store::ActivationStore& acts, const tokenizer::Tokenizer& tok,
                                              int64_t first, int64_t count, const ContextLabelerOptions& options) {
  NLA_CHECK(first >= 0 && count >= 0 && first + count <= acts.n_samples(), "rows out of range");
  SampleContextReader reader(acts, tok);
  std::vector<std::string> descriptions;
  descriptions.reserve(count);
  for (int64_t row = first; row < first + count; ++row) {
    auto context = reader.context(row, options.context_tokens, 0);
    std::vector<std::string> snippets;
    for (const auto& field : options.fields) {
      if (field == "before") snippets.push_back("Text just before: \"" + one_line(tok.decode(context.before)) + "\"");
      if (field == "token") snippets.push_back("Current token: \"" + one_line(tok.decode({context.token})) + "\"");
      if (field == "domain")
        snippets.push_back("Domain: " + (context.source.empty() ? std::string("unknown") : context.source));
    }
    descriptions.push_back(answer_format(snippets));
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
