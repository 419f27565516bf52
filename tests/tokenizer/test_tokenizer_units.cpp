// Unit tests of each tokenizer stage: merges in both file formats and added-token flags
// (a tiny tokenizer, expected values from Hugging Face tokenizers), the byte-level map,
// lossy UTF-8, the NFC quick check, both BPE merge algorithms, the chat template, and the
// one-line errors for bad tokenizer files.
#include <gtest/gtest.h>

#include <utf8proc.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "byte_level.hpp"
#include "model.hpp"
#include "nla/core/error.hpp"
#include "normalizer.hpp"
#include "pre_tokenizer.hpp"
#include "added_tokens.hpp"
#include "test_support.hpp"
#include "tokenizer_test_util.hpp"
#include "utf8.hpp"

namespace nla::test {

using tokenizer::TokenId;
using tokenizer::Tokenizer;

// ---- tiny tokenizer: merges formats and added-token flags against Hugging Face

TEST(TokenizerTiny, BothMergesFormatsMatchHuggingFace) {
  std::ifstream in(test_data("tokenizer/tiny_hf_cases.jsonl"));
  ASSERT_TRUE(in);
  std::map<std::string, Tokenizer> tokenizers;
  int cases = 0;
  for (std::string line; std::getline(in, line);) {
    auto c = nlohmann::json::parse(line);
    std::string file = c["file"];
    if (!tokenizers.count(file)) tokenizers.emplace(file, Tokenizer::from_file(test_data("tokenizer/" + file)));
    const Tokenizer& tok = tokenizers.at(file);
    std::string text = c["text"];
    auto expected = c["ids"].get<std::vector<TokenId>>();
    auto ids = tok.encode(text);
    EXPECT_EQ(ids, expected) << file << ": \"" << escape(text) << "\"\n  ours: " << describe_ids(tok, ids)
                             << "\n  HF:   " << describe_ids(tok, expected);
    EXPECT_EQ(tok.decode(expected, false), c["decoded"].get<std::string>()) << file << ": " << escape(text);
    EXPECT_EQ(tok.decode(expected, true), c["decoded_skip_special"].get<std::string>()) << file << ": " << escape(text);
    ++cases;
  }
  EXPECT_EQ(cases, 72);
  ASSERT_EQ(tokenizers.size(), 2u);
}

TEST(TokenizerTiny, AddedTokenIdsAndLookups) {
  auto tok = Tokenizer::from_file(test_data("tokenizer/tiny_merges_pairs.json"));
  // A normalized token is shown in its normalized form.
  EXPECT_EQ(tok.vocab_size(), 270);
  EXPECT_EQ(tok.token_to_id("<|special|>"), 264);
  EXPECT_EQ(tok.token_to_id("cafe\u0301"), 268);
  EXPECT_EQ(tok.id_to_token(268), "caf\u00e9");
  EXPECT_EQ(tok.token_to_id("\xc4\xa0t"), 256);  // "Ġt"
  EXPECT_TRUE(tok.is_special(264));
  EXPECT_FALSE(tok.is_special(266));
  EXPECT_FALSE(tok.is_special(9999));
  EXPECT_FALSE(tok.token_to_id("nope").has_value());
  EXPECT_THROW(tok.id_to_token(300), InputError);
}

// ---- byte level

TEST(TokenizerByteLevel, AllBytesRoundTrip) {
  const auto& chars = tokenizer::detail::byte_to_chars();
  std::set<std::string> distinct(chars.begin(), chars.end());
  EXPECT_EQ(distinct.size(), 256u);
  EXPECT_EQ(chars[' '], "\xc4\xa0");   // Ġ
  EXPECT_EQ(chars['\n'], "\xc4\x8a");  // Ċ
  EXPECT_EQ(chars['a'], "a");
  const auto& tok = qwen_tokenizer();
  std::string all_bytes;
  std::vector<TokenId> byte_ids;
  for (int b = 0; b < 256; ++b) {
    uint32_t cp;
    tokenizer::detail::decode_utf8(chars[b], 0, cp);
    EXPECT_EQ(tokenizer::detail::char_to_byte(cp), b);
    auto id = tok.token_to_id(chars[b]);
    ASSERT_TRUE(id.has_value()) << b;
    byte_ids.push_back(*id);
    all_bytes += static_cast<char>(b);
    // One byte alone decodes to itself when it is ASCII, else to U+FFFD.
    EXPECT_EQ(tok.decode({*id}), b < 0x80 ? std::string(1, char(b)) : std::string("\xEF\xBF\xBD")) << b;
  }
  EXPECT_EQ(tok.decode(byte_ids), tokenizer::detail::utf8_lossy(all_bytes));
  EXPECT_EQ(tokenizer::detail::char_to_byte(0x4E00), -1);
  // Every valid UTF-8 text survives encode -> decode.
  std::string ascii = all_bytes.substr(0, 128);
  EXPECT_EQ(tok.decode(tok.encode(ascii)), ascii);
}

TEST(TokenizerByteLevel, LossyUtf8IsRustFromUtf8Lossy) {
  using tokenizer::detail::utf8_lossy;
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(utf8_lossy("Hello\xF0\x90\x80World"), "Hello" + r + "World");
  EXPECT_EQ(utf8_lossy("\xF0\x9F\x98"), r);            // truncated 4-byte: one maximal subpart
  EXPECT_EQ(utf8_lossy("\xE0\x80"), r + r);            // E0 needs A0..BF next
  EXPECT_EQ(utf8_lossy("\xED\xA0\x80"), r + r + r);    // surrogate
  EXPECT_EQ(utf8_lossy("\xF4\x90\x80\x80"), r + r + r + r);  // above U+10FFFF
  EXPECT_EQ(utf8_lossy("\xC0\xAF"), r + r);            // overlong
  EXPECT_EQ(utf8_lossy("\x80\xBF"), r + r);
  EXPECT_EQ(utf8_lossy("a\xF0\x9F\x98\x80z"), "a\xF0\x9F\x98\x80z");
  EXPECT_EQ(utf8_lossy("\xF0\x9F\x98" "a"), r + "a");
  EXPECT_EQ(tokenizer::detail::find_invalid_utf8("ok\xC3"), 2u);
  EXPECT_EQ(tokenizer::detail::find_invalid_utf8("\xC3\xA9"), std::string::npos);
}

// ---- NFC

// The quick check may only skip code points that NFC leaves alone whatever surrounds
// them: NFC_QC=Yes and combining class 0.
TEST(TokenizerNormalizer, QuickCheckRangesAreNfcInert) {
  // NFC_Quick_Check=Maybe (DerivedNormalizationProps.txt): they compose with what precedes.
  const std::vector<std::pair<uint32_t, uint32_t>> maybe = {
      {0x300, 0x34E}, {0x653, 0x655}, {0x93C, 0x93C}, {0x9BE, 0x9BE}, {0x9D7, 0x9D7}, {0xB3E, 0xB3E},
      {0xB56, 0xB57}, {0xBBE, 0xBBE}, {0xBD7, 0xBD7}, {0xC56, 0xC56}, {0xCC2, 0xCC2}, {0xCD5, 0xCD6},
      {0xD3E, 0xD3E}, {0xD57, 0xD57}, {0xDCA, 0xDCA}, {0xDCF, 0xDCF}, {0xDDF, 0xDDF}, {0x102E, 0x102E},
      {0x1161, 0x1175}, {0x11A8, 0x11C2}, {0x1B35, 0x1B35}, {0x3099, 0x309A}, {0x110BA, 0x110BA},
      {0x11127, 0x11127}, {0x1133E, 0x1133E}, {0x11357, 0x11357}, {0x114B0, 0x114BD}, {0x115AF, 0x115AF},
      {0x11930, 0x11930}};
  int inert = 0;
  for (uint32_t cp = 0; cp < 0x110000; ++cp) {
    if (cp >= 0xD800 && cp < 0xE000) continue;
    std::string text;
    tokenizer::detail::append_utf8(text, cp);
    if (!tokenizer::detail::nfc_quick_check(text)) continue;
    ++inert;
    const utf8proc_property_t* property = utf8proc_get_property(static_cast<utf8proc_int32_t>(cp));
    ASSERT_EQ(property->combining_class, 0) << std::hex << cp;
    utf8proc_uint8_t* nfc = nullptr;
    auto length = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()), utf8proc_ssize_t(text.size()),
                               &nfc, utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
    ASSERT_GE(length, 0);
    ASSERT_EQ(std::string(reinterpret_cast<char*>(nfc), size_t(length)), text) << std::hex << cp;
    std::free(nfc);
    for (auto [lo, hi] : maybe) ASSERT_FALSE(cp >= lo && cp <= hi) << std::hex << cp;
  }
  EXPECT_GT(inert, 80000);
  // And the slow path does compose.
  tokenizer::detail::Normalizer nfc(tokenizer::detail::Normalizer::Kind::nfc);
  std::string scratch;
  EXPECT_EQ(nfc.normalize("cafe\u0301", scratch), "caf\u00e9");
  EXPECT_EQ(nfc.normalize("\u1100\u1161\u11a8", scratch), "\uac01");
  EXPECT_EQ(nfc.normalize("\u212b", scratch), "\u00c5");
}

// ---- pre-tokenizer: every code point is a letter / number / other exactly as for
// Hugging Face (tests/data/tokenizer/hf_unicode_classes.json, probed from tokenizers with
// tests/tools/gen_unicode_classes.mjs), Unicode versions notwithstanding.

TEST(TokenizerPreTokenizer, UnicodeClassesMatchHuggingFace) {
  auto classes = nlohmann::json::parse(read_text(test_data("tokenizer/hf_unicode_classes.json")));
  std::vector<char> expected(0x110000, 'o');
  for (const auto& r : classes["letter"])
    for (uint32_t cp = r[0]; cp <= r[1].get<uint32_t>(); ++cp) expected[cp] = 'L';
  for (const auto& r : classes["number"])
    for (uint32_t cp = r[0]; cp <= r[1].get<uint32_t>(); ++cp) expected[cp] = 'N';
  auto tokenizer_json = nlohmann::json::parse(read_text(qwen_tokenizer_path()));
  tokenizer::detail::PreTokenizer pre(tokenizer_json["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"], "test");
  int mismatches = 0;
  std::vector<tokenizer::detail::Piece> pieces;
  for (uint32_t cp = 0; cp < 0x110000; ++cp) {
    if (cp >= 0xD800 && cp < 0xE000) continue;
    std::string c;
    tokenizer::detail::append_utf8(c, cp);
    pieces.clear();
    pre.split("a" + c, pieces);
    char ours = 'o';
    if (pieces.size() == 1) {
      ours = 'L';
    } else {
      pieces.clear();
      pre.split("$" + c, pieces);
      if (pieces.size() == 2 && !tokenizer::detail::is_white_space(cp)) ours = 'N';
    }
    if (ours != expected[cp] && ++mismatches <= 10)
      ADD_FAILURE() << "U+" << std::hex << cp << ": ours " << ours << ", Hugging Face " << expected[cp];
  }
  EXPECT_EQ(mismatches, 0);
}

TEST(TokenizerPreTokenizer, PatternTranslation) {
  using tokenizer::detail::translate_pattern;
  const std::string ws = R"(\t\n\x{0B}\f\r\x{20}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";
  EXPECT_EQ(translate_pattern(R"(\s+(?!\S)|[^\s\p{L}]|\p{L}+)", false),
            "[" + ws + "]+(?![^" + ws + "])|[^" + ws + R"(\p{L}]|\p{L}+)");
  EXPECT_EQ(translate_pattern(R"([]\s]\\s)", false), "[]" + ws + R"(]\\s)");  // literal ']' and an escaped backslash
  std::string extended = translate_pattern(R"(\p{N}|[^\p{L}])", true);
  EXPECT_EQ(extended.rfind(R"([\p{N}\x{10D40}-\x{10D49})", 0), 0u) << extended;
  EXPECT_NE(extended.find(R"(|[^\p{L}\x{1C89}-\x{1C8A})"), std::string::npos) << extended;
  EXPECT_THROW(translate_pattern(R"([\S])", false), std::invalid_argument);
  EXPECT_TRUE(tokenizer::detail::has_extended_code_point("abc \U00013460 def"));
  EXPECT_FALSE(tokenizer::detail::has_extended_code_point("abc 日本語 \U0001F389 \u1C88"));
}

// ---- BPE: the heap algorithm (long words) and the scan (short words) agree

TEST(TokenizerBpe, ShortAndHeapMergesAgree) {
  tokenizer::detail::TokenizerModel model;
  std::string path = qwen_tokenizer_path();
  tokenizer::detail::load_tokenizer_json(path, read_text(path), model);
  std::mt19937 random(7);
  const auto& chars = tokenizer::detail::byte_to_chars();
  const std::string alphabet = "aaabcdeeefghiinnoorsttu  .,'0123\n";
  for (int trial = 0; trial < 3000; ++trial) {
    size_t length = 1 + random() % 40;
    std::vector<TokenId> a;
    std::string word;
    for (size_t i = 0; i < length; ++i) {
      unsigned char b = trial % 5 == 0 ? static_cast<unsigned char>(random() % 256)
                                       : static_cast<unsigned char>(alphabet[random() % alphabet.size()]);
      word += static_cast<char>(b);
      a.push_back(*qwen_tokenizer().token_to_id(chars[b]));
    }
    auto b = a;
    model.bpe.merge(a, false);
    model.bpe.merge(b, true);
    ASSERT_EQ(a, b) << "word \"" << escape(word) << "\"";
  }
}

// ---- chat template. The strings below are written by hand from the Jinja template in
// models/tokenizer_config.json; MatchesJinjaRenderedTemplate checks against Jinja2 itself.

TEST(TokenizerChat, OneUserTurnGetsTheDefaultSystemPrompt) {
  using tokenizer::render_chat;
  const std::string system = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n";
  EXPECT_EQ(render_chat({{"user", "Hi"}}, true), system + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(render_chat({{"user", "Hi"}}, false), system + "<|im_start|>user\nHi<|im_end|>\n");
  EXPECT_EQ(render_chat({{"user", ""}}, false), system + "<|im_start|>user\n<|im_end|>\n");
}

TEST(TokenizerChat, SystemMessageAndSeveralTurns) {
  using tokenizer::render_chat;
  std::vector<tokenizer::ChatMessage> chat = {
      {"system", "Be brief."}, {"user", "2+2?"}, {"assistant", "4"}, {"user", "and 3+3?\n"}};
  EXPECT_EQ(render_chat(chat, true),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n"
            "<|im_start|>user\nand 3+3?\n<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(render_chat({{"user", "a"}, {"assistant", "b"}}, false),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nb<|im_end|>\n");
  // A system message after the first is rendered as a turn of its own.
  EXPECT_EQ(render_chat({{"user", "a"}, {"system", "s"}}, false),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\na<|im_end|>\n<|im_start|>system\ns<|im_end|>\n");
  // Consecutive tool results share one user turn.
  EXPECT_EQ(render_chat({{"system", "S"}, {"tool", "r1"}, {"tool", "r2"}, {"user", "u"}}, false),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n<tool_response>\nr1\n</tool_response>\n<tool_response>\nr2\n"
            "</tool_response><|im_end|>\n<|im_start|>user\nu<|im_end|>\n");
  EXPECT_THROW(render_chat({}, true), InputError);
  EXPECT_THROW(render_chat({{"usr", "typo"}}, true), InputError);
}

// The same template rendered by Jinja2 as transformers' apply_chat_template sets it up
// (tests/tools/gen_chat_cases.py): every case must match to the byte.
TEST(TokenizerChat, MatchesJinjaRenderedTemplate) {
  std::istringstream lines(read_text(test_data("tokenizer/qwen2_chat_cases.jsonl")));
  int cases = 0;
  for (std::string line; std::getline(lines, line); ++cases) {
    auto c = nlohmann::json::parse(line);
    std::vector<tokenizer::ChatMessage> messages;
    for (const auto& m : c["messages"]) messages.push_back({m["role"], m["content"]});
    bool generation_prompt = c["add_generation_prompt"];
    EXPECT_EQ(tokenizer::render_chat(messages, generation_prompt), c["rendered"].get<std::string>())
        << "case " << cases + 1 << ": " << c["messages"].dump();
  }
  EXPECT_EQ(cases, 22);
}

// DESIGN.md section 1: the AV prompt's marker and its neighbours, the AR suffix ids.
TEST(TokenizerChat, NlaPromptIdsAsTheCheckpointsExpect) {
  const auto& tok = qwen_tokenizer();
  auto ids = tok.encode(tokenizer::render_chat({{"user", "Here is the vector:\n\n<concept>\u320e</concept>\n\nPlease."}}, true));
  auto marker = std::find(ids.begin(), ids.end(), 149705);
  ASSERT_NE(marker, ids.end()) << describe_ids(tok, ids);
  EXPECT_EQ(marker[-1], 29);
  EXPECT_EQ(marker[1], 522);
  EXPECT_EQ(ids.front(), 151644);
  EXPECT_EQ(std::vector<TokenId>(ids.end() - 3, ids.end()), (std::vector<TokenId>{151644, 77091, 198}));
  auto ar = tok.encode("Summary of the following text: <text>a cat</text> <summary>");
  EXPECT_EQ(std::vector<TokenId>(ar.end() - 5, ar.end()), (std::vector<TokenId>{1318, 29, 366, 1708, 29}));
}

// ---- the Qwen2.5 vocabulary and API details

TEST(TokenizerQwen, VocabularyAndHash) {
  const auto& tok = qwen_tokenizer();
  EXPECT_EQ(tok.vocab_size(), 151665);
  EXPECT_EQ(tok.sha256(), "c0382117ea329cdf097041132f6d735924b697924d6f6fc3945713e96ce87539");
  EXPECT_EQ(tok.token_to_id("<|endoftext|>"), 151643);
  EXPECT_EQ(tok.token_to_id("<|im_end|>"), 151645);
  EXPECT_EQ(tok.id_to_token(1879), "\xc4\xa0world");
  EXPECT_TRUE(tok.is_special(151644));
  EXPECT_FALSE(tok.is_special(151657));  // <tool_call> is added but not special
  EXPECT_FALSE(tok.is_special(1879));
  // Ids without a token are dropped by decode, as tokenizers does; special ones on request.
  EXPECT_EQ(tok.decode({9707, 151645, 999999, -1, 1879}), "Hello<|im_end|> world");
  EXPECT_EQ(tok.decode({9707, 151645, 1879}, true), "Hello world");
  EXPECT_TRUE(tok.encode("").empty());
  auto from_dir = Tokenizer::from_file(repo_path("models"));
  EXPECT_EQ(from_dir.encode("Hello world"), (std::vector<TokenId>{9707, 1879}));
  EXPECT_EQ(from_dir.path(), repo_path("models") + "/tokenizer.json");
}

TEST(TokenizerQwen, InvalidUtf8IsAnInputError) {
  try {
    qwen_tokenizer().encode("ab\xC3");
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_STREQ(e.what(), "tokenizer: text is not valid UTF-8 (byte 2)");
  }
}

TEST(TokenizerQwen, LongRunsAndConcurrentCallsAgree) {
  const auto& tok = qwen_tokenizer();
  // Long words go around the word cache and through the heap merge; long runs stress the regex.
  std::string spaces(100000, ' ');
  EXPECT_EQ(tok.decode(tok.encode(spaces + "x")), spaces + "x");
  std::string letters;
  for (int i = 0; i < 20000; ++i) letters += "abcdefghij"[i * 7 % 10];
  EXPECT_EQ(tok.decode(tok.encode(letters)), letters);
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i)
    texts.push_back("Document " + std::to_string(i) + ": the quick brown fox 日本語 " + std::string(i % 7, ' ') + "🎉 jumps.\n");
  std::vector<std::vector<TokenId>> expected;
  for (const auto& text : texts) expected.push_back(tok.encode(text));
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int round = 0; round < 20; ++round)
        for (size_t i = 0; i < texts.size(); ++i)
          if (tok.encode(texts[(i + t) % texts.size()]) != expected[(i + t) % texts.size()]) ++mismatches[t];
    });
  for (auto& thread : threads) thread.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(mismatches[t], 0) << "thread " << t;
}

// ---- bad files: one line naming the file and the field

class TokenizerBadFile : public ::testing::Test {
 protected:
  // The tiny tokenizer with `edit` applied, written to a temp file; returns the error message.
  template <typename Edit>
  std::string error_for(Edit edit) {
    auto json = nlohmann::json::parse(read_text(test_data("tokenizer/tiny_merges_strings.json")));
    edit(json);
    path_ = dir_.file("tok.json");
    write_text(path_, json.dump());
    return error_of_file();
  }
  std::string error_of_file() {
    try {
      Tokenizer::from_file(path_);
    } catch (const InputError& e) {
      std::string message = e.what();
      EXPECT_EQ(message.find('\n'), std::string::npos) << message;
      return message;
    }
    return "(no error)";
  }
  TempDir dir_;
  std::string path_;
};

TEST_F(TokenizerBadFile, MessagesNameTheFileAndTheField) {
  auto p = [&](const std::string& rest) { return dir_.file("tok.json") + ": " + rest; };
  EXPECT_EQ(error_for([](auto& j) { j["model"]["merges"][1] = "ab"; }),
            p("model.merges[1]: expected \"a b\" or [\"a\",\"b\"]"));
  EXPECT_EQ(error_for([](auto& j) { j["model"]["merges"][2] = nlohmann::json::array({"a"}); }),
            p("model.merges[2]: expected \"a b\" or [\"a\",\"b\"]"));
  EXPECT_EQ(error_for([](auto& j) { j["model"]["merges"][0] = "a b c"; }),
            p("model.merges[0]: expected \"a b\" or [\"a\",\"b\"]"));
  EXPECT_EQ(error_for([](auto& j) { j["model"]["merges"][3] = "zz q"; }),
            p("model.merges[3]: expected tokens of model.vocab, \"zz\" is not one"));
  EXPECT_EQ(error_for([](auto& j) { j.erase("model"); }), p(".model: expected a value (missing)"));
  EXPECT_EQ(error_for([](auto& j) { j["model"]["type"] = "WordPiece"; }),
            p("model.type: expected \"BPE\", got \"WordPiece\""));
  EXPECT_EQ(error_for([](auto& j) { j["model"]["vocab"]["x"] = -4; }),
            p("model.vocab[\"x\"]: expected a non-negative integer id"));
  EXPECT_EQ(error_for([](auto& j) { j["model"]["vocab"].erase("a"); }).substr(0, p("model.vocab: expected the byte-level token \"a\"").size()),
            p("model.vocab: expected the byte-level token \"a\""));
  EXPECT_EQ(error_for([](auto& j) { j["model"]["dropout"] = 0.1; }),
            p("model.dropout: expected null (BPE dropout is not supported)"));
  EXPECT_EQ(error_for([](auto& j) { j["added_tokens"][2].erase("content"); }),
            p("added_tokens[2].content: expected a value (missing)"));
  EXPECT_EQ(error_for([](auto& j) { j["added_tokens"][0]["lstrip"] = "yes"; }),
            p("added_tokens[0].lstrip: expected true or false"));
  EXPECT_EQ(error_for([](auto& j) { j["normalizer"] = {{"type", "NFKC"}}; }),
            p("normalizer: expected null or {\"type\": \"NFC\"}, got {\"type\":\"NFKC\"}"));
  EXPECT_EQ(error_for([](auto& j) { j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed"; }),
            p("pre_tokenizer.pretokenizers[0].behavior: expected \"Isolated\""));
  EXPECT_EQ(error_for([](auto& j) { j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(ab"; })
                .rfind(p("pre_tokenizer.pretokenizers[0].pattern.Regex: expected a valid regex: "), 0),
            0u);
  EXPECT_EQ(error_for([](auto& j) { j["decoder"] = nullptr; }), p("decoder: expected {\"type\": \"ByteLevel\"}"));
  write_text(path_, "{\"model\": ");
  EXPECT_EQ(error_of_file().rfind(p("expected JSON: "), 0), 0u);
  path_ = dir_.file("missing.json");
  EXPECT_NE(error_of_file().find("missing.json"), std::string::npos);
}

// Hugging Face numbers new added tokens after the vocabulary (264 entries) and the tokens
// added before them, whatever ids the file says; so do we (with a warning).
TEST_F(TokenizerBadFile, AddedTokenIdsFollowHuggingFace) {
  EXPECT_EQ(error_for([](auto& j) {
              for (size_t i = 0; i < j["added_tokens"].size(); ++i) j["added_tokens"][i]["id"] = 300 + 2 * i;
              j["added_tokens"][3]["content"] = "he";  // already in the vocabulary: keeps its id
            }),
            "(no error)");
  auto tok = Tokenizer::from_file(path_);
  EXPECT_EQ(tok.token_to_id("<|special|>"), 264);
  EXPECT_EQ(tok.token_to_id("he"), 257);
  EXPECT_EQ(tok.token_to_id("<both>"), 268);
  EXPECT_EQ(tok.vocab_size(), 269);
  EXPECT_EQ(tok.encode("she"), (std::vector<TokenId>{115, 257}));  // "he" is matched before the split
}

TEST_F(TokenizerBadFile, GptTwoStyleByteLevelLoads) {
  error_for([](auto& j) { j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}; });
  auto tok = Tokenizer::from_file(path_);
  EXPECT_EQ(tok.decode(tok.encode(" the in")), " the in");
}

}  // namespace nla::test
