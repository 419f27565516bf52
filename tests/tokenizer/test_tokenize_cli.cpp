// `nla tokenize` end to end: ids equal the library's, --chat and --field, one output line
// per input line, the provenance sidecar, and bad input lines reported with their line
// number (exit 2, one line, no output file left behind).
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "nla/core/fs.hpp"
#include "test_support.hpp"
#include "tokenizer_test_util.hpp"

namespace nla::test {

using tokenizer::TokenId;

namespace {

std::vector<std::vector<TokenId>> read_ids(const std::string& path) {
  std::vector<std::vector<TokenId>> out;
  std::istringstream lines(read_text(path));
  for (std::string line; std::getline(lines, line);)
    out.push_back(nlohmann::json::parse(line).at("ids").get<std::vector<TokenId>>());
  return out;
}

std::string jsonl(const std::vector<std::string>& texts, const std::string& field = "text") {
  std::string out;
  for (const auto& text : texts) out += nlohmann::json{{field, text}, {"id", 7}}.dump() + "\n";
  return out;
}

// Files in `dir` (names only): to see that a failed run left nothing behind.
std::vector<std::string> files_in(const std::string& dir) {
  return fs::list_directory(dir);  // sorted
}

const std::vector<std::string> k_texts = {"Hello world", "", "  spaces\tand\nnewlines\r\n", "日本語のテキスト 🎉",
                                          "<|im_start|>user\nhi<|im_end|>", "caf\u0065\u0301 <concept>\u320e</concept>"};

}  // namespace

TEST(TokenizeCli, IdsEqualTheLibrarys) {
  TempDir dir;
  write_text(dir.file("in.jsonl"), jsonl(k_texts));
  auto result = run_nla("tokenize --tokenizer " + qwen_tokenizer_path() + " --input " + dir.file("in.jsonl") +
                        " --output " + dir.file("out.jsonl"));
  ASSERT_EQ(result.exit_status, 0) << result.err;
  auto ids = read_ids(dir.file("out.jsonl"));
  ASSERT_EQ(ids.size(), k_texts.size());
  const auto& tok = qwen_tokenizer();
  for (size_t i = 0; i < k_texts.size(); ++i) EXPECT_EQ(ids[i], tok.encode(k_texts[i])) << "line " << i + 1;
  EXPECT_TRUE(ids[1].empty());  // an empty text is kept, as an empty list
  auto meta = nlohmann::json::parse(read_text(dir.file("out.jsonl.meta.json")));
  EXPECT_EQ(meta["tokenizer_sha256"], tok.sha256());
  EXPECT_EQ(meta["lines"], k_texts.size());
  EXPECT_TRUE(meta["provenance"].contains("command_line"));
  EXPECT_EQ(files_in(dir.path()), (std::vector<std::string>{"in.jsonl", "out.jsonl", "out.jsonl.meta.json"}));
}

TEST(TokenizeCli, ChatFieldAndModelDirectory) {
  TempDir dir;
  write_text(dir.file("in.jsonl"), jsonl(k_texts, "body"));
  auto result = run_nla("tokenize --chat --field body --tokenizer " + repo_path("models") + " --input " +
                        dir.file("in.jsonl") + " --output " + dir.file("out.jsonl"));
  ASSERT_EQ(result.exit_status, 0) << result.err;
  auto ids = read_ids(dir.file("out.jsonl"));
  ASSERT_EQ(ids.size(), k_texts.size());
  const auto& tok = qwen_tokenizer();
  for (size_t i = 0; i < k_texts.size(); ++i)
    EXPECT_EQ(ids[i], tok.encode(tokenizer::render_chat({{"user", k_texts[i]}}, true))) << "line " << i + 1;
  EXPECT_EQ(ids[0].front(), 151644);  // <|im_start|>
}

TEST(TokenizeCli, BadLinesExitTwoWithTheirLineNumber) {
  TempDir dir;
  const std::string base = "tokenize --tokenizer " + qwen_tokenizer_path() + " --output " + dir.file("out.jsonl") +
                           " --input ";
  struct Case {
    std::string contents;
    std::string message;
  };
  const std::string in = dir.file("in.jsonl");
  const std::vector<Case> cases = {
      {"{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"txt\": \"c\"}\n", in + ":3: field 'text': expected a string"},
      {"{\"text\": \"a\"}\n{\"text\": 5}\n", in + ":2: field 'text': expected a string"},
      {"{\"text\": \"a\"}\n{\"text\": \"b\"\n", in + ":2: expected a JSON object (not valid JSON, byte 13)"},
      {"[1, 2]\n", in + ":1: expected a JSON object, got array"},
      {"{\"text\": \"a\"}\n\n{\"text\": \"b\"}\n", in + ":2: expected a JSON object (empty line, byte 1)"},
  };
  for (const auto& c : cases) {
    write_text(in, c.contents);
    auto result = run_nla(base + in);
    EXPECT_EQ(result.exit_status, 2) << c.contents;
    EXPECT_EQ(result.err, "nla tokenize: " + c.message + "\n");
    EXPECT_EQ(files_in(dir.path()), std::vector<std::string>{"in.jsonl"}) << "a failed run left files behind";
  }
  auto missing = run_nla(base + dir.file("nope.jsonl"));
  EXPECT_EQ(missing.exit_status, 2);
  EXPECT_EQ(missing.err, "nla tokenize: " + dir.file("nope.jsonl") + ": cannot read the file\n");
  auto no_input = run_nla("tokenize --output " + dir.file("out.jsonl"));
  EXPECT_EQ(no_input.exit_status, 2);
  EXPECT_EQ(no_input.err, "nla tokenize: option 'input': expected a JSONL file\n");
  write_text(dir.file("bad.json"), "{\"model\": 3}");
  write_text(in, "{\"text\": \"a\"}\n");
  auto bad_tokenizer = run_nla("tokenize --tokenizer " + dir.file("bad.json") + " --input " + in + " --output " +
                               dir.file("out.jsonl"));
  EXPECT_EQ(bad_tokenizer.exit_status, 2);
  EXPECT_EQ(bad_tokenizer.err, "nla tokenize: " + dir.file("bad.json") + ": model: expected an object\n");
}

// The benchmark runs end to end and Hugging Face's tokenizers (through node) gives the same
// ids on its text in the same run. Speed is reported by `nla bench tokenize`, never tested.
TEST(TokenizeCli, BenchAgreesWithHuggingFace) {
  TempDir dir;
  // From the repository root, where the bench finds tests/tools/bench_tokenize_hf.mjs.
  auto result = run_command("cd " + repo_path(".") + " && " NLA_BINARY " bench tokenize --text-bytes 30000 --repeats 1" +
                            " --out " + dir.file("b.json"));
  ASSERT_EQ(result.exit_status, 0) << result.err;
  auto report = nlohmann::json::parse(read_text(dir.file("b.json")));
  std::map<std::string, nlohmann::json> rows;
  for (const auto& row : report["rows"]) rows[row["metric"]] = row;
  ASSERT_TRUE(rows.count("ids agree")) << result.out;
  EXPECT_EQ(rows["ids agree"]["value"], 1.0) << rows["ids agree"]["note"];
  EXPECT_GT(rows["nla tokens/s"]["value"].get<double>(), 0);
  EXPECT_GT(rows["hf tokens/s"]["value"].get<double>(), 0);
}

}  // namespace nla::test
