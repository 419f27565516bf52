// Corpus readers: formats (JSONL plain/gzip/zstd, text files, directories, globs), field
// names, skip counting, one-line input errors with file:line, sharding, the default corpus.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include <unistd.h>

#include "corpus_fixtures.hpp"
#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/data/corpus.hpp"
#include "nla/data/line_reader.hpp"
#include "test_support.hpp"

namespace nla::test {
namespace {

using data::CorpusOptions;
using data::Document;
using data::SkipCounts;

const std::string kThree =
    "{\"id\": \"a\", \"source\": \"web\", \"text\": \"first document\"}\n"
    "{\"id\": 7, \"source\": \"wiki\", \"text\": \"second \\u00e9 document\"}\n"
    "{\"text\": \"third, no id or source\"}\n";

// The InputError message of `fn`, or "" when it does not throw one.
template <typename Fn>
std::string input_error(Fn fn) {
  try {
    fn();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

void expect_three(const std::vector<Document>& docs, const std::string& stem) {
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(docs[0].index, 0);
  EXPECT_EQ(docs[0].id, "a");
  EXPECT_EQ(docs[0].source, "web");
  EXPECT_EQ(docs[0].text, "first document");
  EXPECT_EQ(docs[1].id, "7");
  EXPECT_EQ(docs[1].text, "second \xC3\xA9 document");
  EXPECT_EQ(docs[2].index, 2);
  EXPECT_EQ(docs[2].id, stem + ":3");  // file name and line when the record has no id
  EXPECT_EQ(docs[2].source, "shard");  // the file's stem when it has no source
}

TEST(CorpusJsonl, PlainGzipAndZstdGiveTheSameDocuments) {
  TempDir dir;
  write_bytes(dir.file("shard.jsonl"), kThree);
  write_bytes(dir.file("shard.jsonl.gz"), gzip_bytes(kThree));
  write_bytes(dir.file("shard.jsonl.zst"), zstd_bytes(kThree));
  expect_three(read_all(corpus_options({dir.file("shard.jsonl")})), "shard.jsonl");
  expect_three(read_all(corpus_options({dir.file("shard.jsonl.gz")})), "shard.jsonl.gz");
  expect_three(read_all(corpus_options({dir.file("shard.jsonl.zst")})), "shard.jsonl.zst");
}

TEST(CorpusJsonl, CompressionComesFromMagicBytesNotTheName) {
  TempDir dir;
  write_bytes(dir.file("a.jsonl"), zstd_bytes(kThree));
  write_bytes(dir.file("b.jsonl"), gzip_bytes(kThree));
  write_bytes(dir.file("c.jsonl.gz"), kThree);  // misnamed plain text
  for (auto name : {"a.jsonl", "b.jsonl", "c.jsonl.gz"}) {
    auto docs = read_all(corpus_options({dir.file(name)}));
    ASSERT_EQ(docs.size(), 3u) << name;
    EXPECT_EQ(docs[1].text, "second \xC3\xA9 document") << name;
  }
  data::Compression kind;
  data::open_byte_source(dir.file("a.jsonl"), &kind);
  EXPECT_EQ(kind, data::Compression::zstd);
  data::open_byte_source(dir.file("b.jsonl"), &kind);
  EXPECT_EQ(kind, data::Compression::gzip);
}

TEST(CorpusJsonl, ConcatenatedGzipMembersAndZstdFrames) {
  TempDir dir;
  std::string one = "{\"text\": \"one\"}\n", two = "{\"text\": \"two\"}\n";
  write_bytes(dir.file("x.jsonl.gz"), gzip_bytes(one) + gzip_bytes(two));
  write_bytes(dir.file("x.jsonl.zst"), zstd_bytes(one) + zstd_bytes(two));
  for (auto name : {"x.jsonl.gz", "x.jsonl.zst"}) {
    auto docs = read_all(corpus_options({dir.file(name)}));
    ASSERT_EQ(docs.size(), 2u) << name;
    EXPECT_EQ(docs[1].text, "two");
  }
}

TEST(CorpusJsonl, LongLinesManyLinesCrlfBomAndNoFinalNewline) {
  TempDir dir;
  std::string big(1 << 20, 'x');  // longer than the 128 KiB read buffer
  std::string content = "\xEF\xBB\xBF{\"text\": \"bom\"}\r\n\n  \n{\"text\": \"" + big + "\"}\n";
  for (int i = 0; i < 20000; ++i) content += "{\"text\": \"line " + std::to_string(i) + "\"}\n";
  content += "{\"text\": \"last\"}";  // no final newline
  write_bytes(dir.file("p.jsonl"), content);
  write_bytes(dir.file("z.jsonl"), zstd_bytes(content));
  write_bytes(dir.file("g.jsonl"), gzip_bytes(content));
  for (auto name : {"p.jsonl", "z.jsonl", "g.jsonl"}) {
    auto docs = read_all(corpus_options({dir.file(name)}));
    ASSERT_EQ(docs.size(), 20003u) << name;
    EXPECT_EQ(docs[0].text, "bom");
    EXPECT_EQ(docs[1].text, big);
    EXPECT_EQ(docs[1].id, std::string(name) + ":4");  // blank lines count as lines
    EXPECT_EQ(docs[12345].text, "line 12343");
    EXPECT_EQ(docs.back().text, "last");
    EXPECT_EQ(docs.back().index, 20002);
  }
}

TEST(CorpusJsonl, CustomFieldNamesAndDefaultSource) {
  TempDir dir;
  write_bytes(dir.file("c.jsonl"),
              "{\"content\": \"hello\", \"doc_id\": \"d1\", \"domain\": \"forum\", \"text\": \"not this\"}\n"
              "{\"content\": \"world\"}\n");
  CorpusOptions options = corpus_options({dir.file("c.jsonl")});
  options.text_field = "content";
  options.id_field = "doc_id";
  options.source_field = "domain";
  options.default_source = "misc";
  auto docs = read_all(options);
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0].text, "hello");
  EXPECT_EQ(docs[0].id, "d1");
  EXPECT_EQ(docs[0].source, "forum");
  EXPECT_EQ(docs[1].source, "misc");
  EXPECT_EQ(docs[1].id, "c.jsonl:2");
}

TEST(CorpusJsonl, SkipsAreCountedPerReasonAndLeaveNoGapInTheIndex) {
  TempDir dir;
  std::string lines =
      "{\"text\": \"ok 0\"}\n"
      "{\"title\": \"no text\"}\n"
      "{\"text\": null}\n"
      "{\"text\": \"\"}\n"
      "{\"text\": \"  \\n\\t \"}\n"
      "{\"text\": \"bad \xC3\x28 byte\"}\n"
      "{\"text\": \"lone \\udc80 surrogate\"}\n"
      "{\"text\": \"overlong \xC0\xAF\"}\n"
      "{\"text\": \"ok 1\"}\n";
  write_bytes(dir.file("s.jsonl"), lines);
  SkipCounts skipped;
  auto docs = read_all(corpus_options({dir.file("s.jsonl")}), &skipped);
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[1].text, "ok 1");
  EXPECT_EQ(docs[1].index, 1);
  EXPECT_EQ(skipped.missing_text, 2);
  EXPECT_EQ(skipped.empty, 2);
  EXPECT_EQ(skipped.invalid_utf8, 3);
  EXPECT_EQ(skipped.total(), 7);
  EXPECT_EQ(skipped.by_reason().at("invalid_utf8"), 3);
  EXPECT_EQ(skipped.to_string(), "missing_text=2 empty=2 invalid_utf8=3");
}

TEST(CorpusErrors, BadJsonNamesFileAndLineOnOneLine) {
  TempDir dir;
  write_bytes(dir.file("bad.jsonl"), "{\"text\": \"fine\"}\n{\"text\": \"broken\"\n");
  std::string message = input_error([&] { read_all(corpus_options({dir.file("bad.jsonl")})); });
  EXPECT_EQ(message.rfind(dir.file("bad.jsonl") + ":2: not a JSON line", 0), 0u) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
}

TEST(CorpusErrors, WrongTypesAndNonObjects) {
  TempDir dir;
  write_bytes(dir.file("a.jsonl"), "{\"text\": \"x\"}\n[1, 2]\n");
  write_bytes(dir.file("b.jsonl"), "{\"text\": 42}\n");
  write_bytes(dir.file("c.jsonl"), "{\"text\": \"x\", \"source\": {\"a\": 1}}\n");
  EXPECT_EQ(input_error([&] { read_all(corpus_options({dir.file("a.jsonl")})); }),
            dir.file("a.jsonl") + ":2: expected a JSON object, got array");
  EXPECT_EQ(input_error([&] { read_all(corpus_options({dir.file("b.jsonl")})); }),
            dir.file("b.jsonl") + ":1: field \"text\" must be a string, got number");
  EXPECT_EQ(input_error([&] { read_all(corpus_options({dir.file("c.jsonl")})); }),
            dir.file("c.jsonl") + ":1: field \"source\" must be a string or number, got object");
}

TEST(CorpusErrors, TextFieldMissingOnEveryLineIsAnError) {
  TempDir dir;
  write_bytes(dir.file("m.jsonl"), "{\"body\": \"x\"}\n{\"body\": \"y\"}\n");
  CorpusOptions options = corpus_options({dir.file("m.jsonl")});
  EXPECT_EQ(input_error([&] { read_all(options); }),
            dir.file("m.jsonl") + ": field \"text\" is missing on all 2 lines (set the text field name)");
  options.text_field = "body";
  EXPECT_EQ(read_all(options).size(), 2u);

  // Lines skipped for their encoding say nothing about the field name: no error.
  write_bytes(dir.file("u.jsonl"), "{\"text\": \"\xFF\"}\n{\"text\": \"\\udc80\"}\n");
  SkipCounts skipped;
  EXPECT_TRUE(read_all(corpus_options({dir.file("u.jsonl")}), &skipped).empty());
  EXPECT_EQ(skipped.invalid_utf8, 2);
}

TEST(CorpusErrors, UnreadablePathsAndEmptyMatches) {
  TempDir dir;
  EXPECT_EQ(input_error([&] { read_all(corpus_options({dir.file("nope.jsonl")})); }),
            dir.file("nope.jsonl") + ": corpus path does not exist");
  EXPECT_EQ(input_error([&] { read_all(corpus_options({dir.file("*.jsonl")})); }),
            dir.file("*.jsonl") + ": corpus pattern matches no file");
  fs::create_directories(dir.file("empty"));
  EXPECT_EQ(input_error([&] { read_all(corpus_options({dir.file("empty")})); }),
            dir.file("empty") + ": directory holds no corpus files");
  EXPECT_NE(input_error([&] { read_all(corpus_options({})); }), "");
  if (getuid() != 0) {  // root reads anything
    write_bytes(dir.file("locked.jsonl"), kThree);
    fs::set_permissions(dir.file("locked.jsonl"), 0);
    EXPECT_NE(input_error([&] { read_all(corpus_options({dir.file("locked.jsonl")})); }).find("cannot open"),
              std::string::npos);
  }
}

TEST(CorpusErrors, TruncatedAndCorruptStreams) {
  TempDir dir;
  std::string content;
  for (int i = 0; i < 2000; ++i) content += "{\"text\": \"document number " + std::to_string(i) + "\"}\n";
  std::string zst = zstd_bytes(content), gz = gzip_bytes(content);
  write_bytes(dir.file("t.jsonl.zst"), zst.substr(0, zst.size() / 2));
  write_bytes(dir.file("t.jsonl.gz"), gz.substr(0, gz.size() / 2));
  std::string corrupt = gz;
  for (size_t i = 20; i < 60; ++i) corrupt[i] = static_cast<char>(0xff);
  write_bytes(dir.file("c.jsonl.gz"), corrupt);
  auto zst_error = input_error([&] { read_all(corpus_options({dir.file("t.jsonl.zst")})); });
  auto gz_error = input_error([&] { read_all(corpus_options({dir.file("t.jsonl.gz")})); });
  auto corrupt_error = input_error([&] { read_all(corpus_options({dir.file("c.jsonl.gz")})); });
  EXPECT_EQ(zst_error.rfind(dir.file("t.jsonl.zst") + ":", 0), 0u) << zst_error;
  EXPECT_NE(zst_error.find("truncated zstd stream"), std::string::npos) << zst_error;
  EXPECT_NE(gz_error.find("truncated gzip stream"), std::string::npos) << gz_error;
  EXPECT_NE(corrupt_error.find("corrupt gzip stream"), std::string::npos) << corrupt_error;
}

TEST(CorpusText, DirectoryOfTextFilesIsSortedRecursiveAndSkipsHidden) {
  TempDir dir;
  std::string root = dir.file("docs");
  fs::create_directories(root + "/wiki/deep");
  fs::create_directories(root + "/.git");
  write_bytes(root + "/b.txt", "top level b");
  write_bytes(root + "/a.txt", "top level a");
  write_bytes(root + "/wiki/z.md", "wiki z");
  write_bytes(root + "/wiki/deep/c.txt.zst", zstd_bytes("compressed c"));
  write_bytes(root + "/.hidden", "hidden");
  write_bytes(root + "/.git/config", "hidden too");
  write_bytes(root + "/empty.txt", " \n");
  write_bytes(root + "/binary.bin", std::string("\x00\xff\xfe junk", 9));
  SkipCounts skipped;
  auto docs = read_all(corpus_options({root}), &skipped);
  std::vector<std::string> ids;
  for (const auto& doc : docs) ids.push_back(doc.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"a.txt", "b.txt", "wiki/deep/c.txt.zst", "wiki/z.md"}));
  EXPECT_EQ(docs[0].source, "text");
  EXPECT_EQ(docs[2].source, "wiki");
  EXPECT_EQ(docs[2].text, "compressed c");
  EXPECT_EQ(docs[3].index, 3);
  EXPECT_EQ(skipped.empty, 1);
  EXPECT_EQ(skipped.invalid_utf8, 1);

  CorpusOptions options = corpus_options({root});
  options.default_source = "notes";
  EXPECT_EQ(read_all(options)[0].source, "notes");
}

TEST(CorpusText, DirectoryWithJsonlShardsIgnoresOtherFiles) {
  TempDir dir;
  write_bytes(dir.file("README.md"), "not a document");
  write_bytes(dir.file("b.jsonl.zst"), zstd_bytes("{\"text\": \"from b\"}\n"));
  write_bytes(dir.file("a.jsonl"), "{\"text\": \"from a\"}\n");
  auto docs = read_all(corpus_options({dir.path()}));
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0].text, "from a");
  EXPECT_EQ(docs[1].text, "from b");
  EXPECT_EQ(docs[1].source, "b");

  CorpusOptions options = corpus_options({dir.file("README.md")});
  options.format = data::CorpusFormat::text;
  EXPECT_EQ(read_all(options)[0].text, "not a document");
}

TEST(CorpusText, GlobsAndListsKeepOrderAndReadEachFileOnce) {
  TempDir dir;
  for (int i = 0; i < 4; ++i)
    write_bytes(dir.file("part-" + std::to_string(i) + ".jsonl"), "{\"text\": \"doc " + std::to_string(i) + "\"}\n");
  auto paths = data::split_corpus_paths(dir.file("part-3.jsonl") + "," + dir.file("part-*.jsonl"));
  ASSERT_EQ(paths.size(), 2u);
  auto docs = read_all(corpus_options(paths));
  std::vector<std::string> texts;
  for (const auto& doc : docs) texts.push_back(doc.text);
  EXPECT_EQ(texts, (std::vector<std::string>{"doc 3", "doc 0", "doc 1", "doc 2"}));
}

TEST(CorpusSharding, RanksSeeDisjointShardsThatCoverTheCorpus) {
  TempDir dir;
  std::string a, b;
  for (int i = 0; i < 17; ++i) a += "{\"id\": \"a" + std::to_string(i) + "\", \"text\": \"alpha " + std::to_string(i) + "\"}\n";
  a += "{\"text\": \"\"}\n";  // a skip shifts nothing: indices count accepted documents
  for (int i = 0; i < 12; ++i) b += "{\"id\": \"b" + std::to_string(i) + "\", \"text\": \"beta " + std::to_string(i) + "\"}\n";
  write_bytes(dir.file("a.jsonl.gz"), gzip_bytes(a));
  write_bytes(dir.file("b.jsonl.zst"), zstd_bytes(b));
  CorpusOptions options = corpus_options({dir.path()});
  auto all = read_all(options);
  ASSERT_EQ(all.size(), 29u);
  for (int size : {1, 2, 3, 4}) {
    std::map<int64_t, Document> seen;
    for (int rank = 0; rank < size; ++rank) {
      options.rank = rank;
      options.world_size = size;
      SkipCounts skipped;
      for (const auto& doc : read_all(options, &skipped)) {
        EXPECT_EQ(doc.index % size, rank);
        EXPECT_TRUE(seen.emplace(doc.index, doc).second) << "index " << doc.index << " twice";
      }
      EXPECT_EQ(skipped.empty, 1);  // every rank counts every skip
    }
    ASSERT_EQ(seen.size(), all.size()) << "size " << size;
    for (const auto& doc : all) {
      EXPECT_EQ(seen.at(doc.index).id, doc.id);
      EXPECT_EQ(seen.at(doc.index).text, doc.text);
    }
  }
  options.rank = 3;
  options.world_size = 3;
  EXPECT_NE(input_error([&] { read_all(options); }), "");
}

TEST(CorpusSharding, MaxDocsCountsGlobalDocuments) {
  TempDir dir;
  std::string lines;
  for (int i = 0; i < 10; ++i) lines += "{\"text\": \"d" + std::to_string(i) + "\"}\n";
  write_bytes(dir.file("m.jsonl"), lines);
  CorpusOptions options = corpus_options({dir.file("m.jsonl")});
  options.max_docs = 5;
  options.world_size = 2;
  options.rank = 1;
  auto docs = read_all(options);
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0].index, 1);
  EXPECT_EQ(docs[1].index, 3);
}

TEST(Utf8, ValidatorRejectsMalformedSequences) {
  EXPECT_TRUE(data::is_valid_utf8(""));
  EXPECT_TRUE(data::is_valid_utf8("plain ascii text, long enough for the 8-byte path"));
  EXPECT_TRUE(data::is_valid_utf8("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80 \xE3\x88\x8E"));
  EXPECT_FALSE(data::is_valid_utf8("\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(data::is_valid_utf8("\xE0\x80\xAF"));      // overlong
  EXPECT_FALSE(data::is_valid_utf8("\xED\xA0\x80"));      // surrogate U+D800
  EXPECT_FALSE(data::is_valid_utf8("\xF4\x90\x80\x80"));  // > U+10FFFF
  EXPECT_FALSE(data::is_valid_utf8("abc\xE2\x82"));       // truncated
  EXPECT_FALSE(data::is_valid_utf8("\x80"));              // lone continuation
  EXPECT_FALSE(data::is_valid_utf8("12345678\xFF"));
}

// The committed demo corpus: five domains, clean text, documents of a useful length.
TEST(DefaultCorpus, LoadsWithFiveDomainsOfValidLongDocuments) {
  constexpr size_t kMinChars = 600;  // scripts/build_corpus.py MIN_CHARS
  auto options = corpus_options({data::default_corpus_path()});
  data::CorpusReader reader(options);
  EXPECT_EQ(reader.files().size(), 5u);
  std::map<std::string, int> per_source;
  std::set<std::string> ids;
  Document doc;
  int64_t n = 0;
  while (reader.next(doc)) {
    ++n;
    ++per_source[doc.source];
    EXPECT_TRUE(ids.insert(doc.id).second) << "duplicate id " << doc.id;
    EXPECT_TRUE(data::is_valid_utf8(doc.text)) << doc.id;
    EXPECT_GE(doc.text.size(), kMinChars) << doc.id;
    EXPECT_EQ(doc.id.rfind(doc.source + "-", 0), 0u) << doc.id;
  }
  EXPECT_EQ(reader.skipped().total(), 0);
  std::set<std::string> domains;
  for (const auto& [source, count] : per_source) {
    domains.insert(source);
    EXPECT_GE(count, 300) << source;
  }
  EXPECT_EQ(domains, (std::set<std::string>{"biomedical", "code", "forum", "web", "wiki"}));
  auto summary = data::summarize_corpus(options);
  EXPECT_EQ(summary.documents, n);
  EXPECT_EQ(summary.documents_by_source, (std::map<std::string, int64_t>(per_source.begin(), per_source.end())));
}

}  // namespace
}  // namespace nla::test
