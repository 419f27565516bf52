// nla label: the context labeler's snippets, given texts (jsonl:), copies vs in place, and
// bad input.
#include <gtest/gtest.h>
#include <mpi.h>


#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/label/labelers.hpp"
#include "nla/label/sample_context.hpp"
#include "nla/store/activation_store.hpp"
#include "nla/tokenizer/tokenizer.hpp"
#include "test_support.hpp"

namespace nla::test {
namespace {

// A store with two documents and three samples, tokenized with the real tokenizer.
std::string make_store(const TempDir& dir, const tokenizer::Tokenizer& tok) {
  std::vector<std::string> texts = {"The quick brown fox jumps over the lazy dog near the river bank today.",
                                    "int main() {\n  return 42;\n}\n// a comment after the code"};
  std::vector<store::StoreDocument> documents;
  for (int64_t index = 0; index < 2; ++index) {
    store::StoreDocument document;
    document.index = index;
    document.id = "d" + std::to_string(index);
    document.source = index ? "code" : "web";
    document.text = texts[index];
    auto tokens = tok.encode(texts[index]);
    for (int32_t position : index ? std::vector<int32_t>{5} : std::vector<int32_t>{3, 9}) {
      document.positions.push_back(position);
      document.tokens.push_back(tokens[position]);
    }
    documents.push_back(document);
  }
  store::StoreHeader header;
  header.model = dir.path();
  header.tokenizer_sha256 = tok.sha256();
  header.hidden_size = 2;
  header.layers = {0};
  std::string path = dir.file("acts.h5");
  store::ActivationStoreWriter writer(path, header, documents, MPI_COMM_WORLD);
  std::vector<float> rows(3 * 2, 0.5f);
  writer.write_round({0, 1}, {rows.data()});
  writer.finish();
  return path;
}

TEST(Label, ContextSnippetsQuoteTheTextBeforeTheTokenAndItsDomain) {
  TempDir dir;
  auto tok = tokenizer::Tokenizer::from_file(repo_path("models/tokenizer.json"));
  fs::copy_file(repo_path("models/tokenizer.json"), dir.file("tokenizer.json"));
  std::string path = make_store(dir, tok);
  store::ActivationStore acts(path);
  label::ContextLabelerOptions options;
  options.context_tokens = 3;
  auto descriptions = label::context_descriptions(acts, tok, 0, 3, options);
  ASSERT_EQ(descriptions.size(), 3u);
  // Document 0, position 3: tokens "The| quick| brown| fox" -> context "The quick brown", token " fox".
  EXPECT_EQ(descriptions[0],
            "<explanation>\nText just before: \"The quick brown\"\nCurrent token: \"fox\"\nDomain: web\n</explanation>");
  EXPECT_NE(descriptions[2].find("Domain: code"), std::string::npos) << descriptions[2];
  EXPECT_EQ(descriptions[2].find("\n  "), std::string::npos) << "snippets are single lines";
}

TEST(Label, ContextFieldsChooseTheSnippetsInAFixedOrder) {
  TempDir dir;
  auto tok = tokenizer::Tokenizer::from_file(repo_path("models/tokenizer.json"));
  std::string path = make_store(dir, tok);
  store::ActivationStore acts(path);
  label::ContextLabelerOptions options;
  options.context_tokens = 3;
  options.fields = label::parse_context_fields("domain,token");  // written in kContextFields' order
  EXPECT_EQ(label::context_descriptions(acts, tok, 0, 1, options)[0],
            "<explanation>\nCurrent token: \"fox\"\nDomain: web\n</explanation>");
  options.fields = label::parse_context_fields("token");
  EXPECT_EQ(label::context_descriptions(acts, tok, 0, 1, options)[0],
            "<explanation>\nCurrent token: \"fox\"\n</explanation>");
  EXPECT_EQ(label::parse_context_fields("before,token,domain"), label::kContextFields);
  for (const char* bad : {"", "token,", "tokens", "token,token"})
    EXPECT_THROW(label::parse_context_fields(bad), InputError) << bad;
}

TEST(Label, SampleContextGivesTheTokensAroundEachPosition) {
  TempDir dir;
  auto tok = tokenizer::Tokenizer::from_file(repo_path("models/tokenizer.json"));
  std::string path = make_store(dir, tok);
  store::ActivationStore acts(path);
  label::SampleContextReader reader(acts, tok);
  auto tokens = tok.encode("The quick brown fox jumps over the lazy dog near the river bank today.");
  auto context = reader.context(1, 2, 3);  // document 0, position 9
  EXPECT_EQ(context.token, tokens[9]);
  EXPECT_EQ(context.before, std::vector<tokenizer::TokenId>(tokens.begin() + 7, tokens.begin() + 9));
  EXPECT_EQ(context.after, std::vector<tokenizer::TokenId>(tokens.begin() + 10, tokens.begin() + 13));
  EXPECT_EQ(context.source, "web");
  auto edge = reader.context(0, 100, 0);  // position 3: only 3 tokens before it
  EXPECT_EQ(edge.before.size(), 3u);
  EXPECT_TRUE(edge.after.empty());
}

TEST(Label, CommandWritesDescriptionsIntoTheStoreOrACopy) {
  TempDir dir;
  auto tok = tokenizer::Tokenizer::from_file(repo_path("models/tokenizer.json"));
  fs::copy_file(repo_path("models/tokenizer.json"), dir.file("tokenizer.json"));
  std::string path = make_store(dir, tok);

  auto copy = run_nla("label --store " + path + " --out " + dir.file("labelled.h5"));
  ASSERT_EQ(copy.exit_status, 0) << copy.err;
  EXPECT_FALSE(store::ActivationStore(path).has_descriptions("gold")) << "--out leaves the input untouched";
  EXPECT_EQ(store::ActivationStore(dir.file("labelled.h5")).read_descriptions("gold").size(), 3u);

  write_text(dir.file("given.jsonl"), "{\"row\": 2, \"description\": \"c\"}\n{\"row\": 0, \"description\": \"a\"}\n"
                                      "{\"description\": \"b\"}\n");
  auto given = run_nla("label --store " + path + " --labeler jsonl:" + dir.file("given.jsonl") + " --name given");
  ASSERT_EQ(given.exit_status, 0) << given.err;
  EXPECT_EQ(store::ActivationStore(path).read_descriptions("given"), (std::vector<std::string>{"a", "b", "c"}));
}

TEST(Label, BadInputExitsTwoWithOneLine) {
  TempDir dir;
  auto tok = tokenizer::Tokenizer::from_file(repo_path("models/tokenizer.json"));
  fs::copy_file(repo_path("models/tokenizer.json"), dir.file("tokenizer.json"));
  std::string path = make_store(dir, tok);
  auto unknown = run_nla("label --store " + path + " --labeler oracle");
  EXPECT_EQ(unknown.exit_status, 2);
  EXPECT_EQ(unknown.err, "nla label: option 'labeler': expected context, jsonl:FILE or av:DIR, got 'oracle'\n");

  write_text(dir.file("short.jsonl"), "{\"description\": \"a\"}\n{\"description\": 3}\n");
  auto bad_field = run_nla("label --store " + path + " --labeler jsonl:" + dir.file("short.jsonl"));
  EXPECT_EQ(bad_field.exit_status, 2);
  EXPECT_EQ(bad_field.err, "nla label: " + dir.file("short.jsonl") + ":2: field 'description': expected a string\n");

  write_text(dir.file("missing.jsonl"), "{\"description\": \"a\"}\n");
  auto missing = run_nla("label --store " + path + " --labeler jsonl:" + dir.file("missing.jsonl"));
  EXPECT_EQ(missing.exit_status, 2);
  EXPECT_NE(missing.err.find("row 1 has no description"), std::string::npos) << missing.err;
  EXPECT_FALSE(store::ActivationStore(path).has_descriptions("gold")) << "nothing written on error";

  auto bad_fields = run_nla("label --store " + path + " --fields token,place");
  EXPECT_EQ(bad_fields.exit_status, 2);
  EXPECT_EQ(bad_fields.err, "nla label: option 'fields': expected a comma-separated subset of before,token,domain, "
                            "got 'token,place'\n");

  auto no_store = run_nla("label --store " + dir.file("nope.h5"));
  EXPECT_EQ(no_store.exit_status, 2);
  EXPECT_EQ(no_store.err, "nla label: " + dir.file("nope.h5") + ": no such file\n");
}

}  // namespace
}  // namespace nla::test
