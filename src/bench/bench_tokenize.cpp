// nla bench tokenize: tokens/s of our tokenizer on one thread over a few MB of mixed text,
// side by side with Hugging Face's tokenizers (Rust, through node) on the same documents
// in the same run. Both sides get a warm-up pass (word caches filled) and report the best
// of `repeats` timed passes; the token counts and an id checksum must agree.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "nla/bench/bench.hpp"
#include "nla/core/atomic_file.hpp"
#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/tokenizer/tokenizer.hpp"

namespace nla::bench {

namespace {

// splitmix64: the built-in mix is the same on every machine and compiler.
struct Random {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  size_t below(size_t n) { return static_cast<size_t>(next() % n); }
  template <typename T, size_t N>
  const T& pick(const T (&list)[N]) { return list[below(N)]; }
};

void append_code_point(std::string& out, uint32_t cp) {
  if (cp < 0x80) out += char(cp);
  else if (cp < 0x800) { out += char(0xC0 | (cp >> 6)); out += char(0x80 | (cp & 0x3F)); }
  else if (cp < 0x10000) { out += char(0xE0 | (cp >> 12)); out += char(0x80 | ((cp >> 6) & 0x3F)); out += char(0x80 | (cp & 0x3F)); }
  else { out += char(0xF0 | (cp >> 18)); out += char(0x80 | ((cp >> 12) & 0x3F)); out += char(0x80 | ((cp >> 6) & 0x3F)); out += char(0x80 | (cp & 0x3F)); }
}

const char* const k_words[] = {
    "the", "of", "and", "to", "in", "is", "was", "that", "for", "it", "with", "as", "his", "on", "be", "at", "by",
    "had", "are", "but", "from", "or", "have", "an", "they", "which", "one", "you", "were", "her", "all", "she",
    "there", "would", "their", "we", "him", "been", "has", "when", "who", "will", "more", "no", "if", "out", "so",
    "said", "what", "up", "its", "about", "into", "than", "them", "can", "only", "other", "new", "some", "could",
    "time", "these", "two", "may", "then", "do", "first", "any", "my", "now", "such", "like", "our", "over", "man",
    "me", "even", "most", "made", "after", "also", "did", "many", "before", "must", "through", "back", "years",
    "where", "much", "your", "way", "well", "down", "should", "because", "each", "just", "those", "people", "how",
    "activation", "residual", "vector", "reconstruction", "explanation", "transformer", "gradient", "tokenizer",
    "photosynthesis", "municipality", "Wednesday", "Mississippi", "government", "international", "approximately",
    "doesn't", "it's", "we'll", "they're", "I've", "O'Brien", "e-mail", "state-of-the-art", "naïve", "café", "résumé"};
const char* const k_code[] = {
    "def forward(self, x):\n", "    return self.proj(x) + residual\n", "for (int i = 0; i < n; ++i) {\n",
    "\tsum += a[i] * b[i];\n", "}\n", "#include <vector>\n", "if (err != nullptr) { return -1; }\n",
    "    x = torch.zeros((batch, seq_len, 3584), dtype=torch.bfloat16)\n", "import numpy as np\n",
    "const auto& item = items.at(index);\n", "        # TODO: handle the edge case\n",
    "SELECT name, COUNT(*) FROM users GROUP BY name;\n", "let mut v: Vec<u32> = Vec::with_capacity(1024);\n",
    "    }\n\n", "print(f\"{loss:.4f} at step {step}\")\n", "    \"key\": [1, 2, 3],\n"};
const char* const k_emoji[] = {"😀", "🎉", "👍🏽", "👨‍👩‍👧‍👦", "🇯🇵", "❤️", "🚀", "🤖", "✨", "🧑🏿‍💻"};
const char* const k_spaces[] = {"  ", "\t", "\n\n", "   \n", " \r\n", "        ", "\n\t\t"};

std::string prose_paragraph(Random& random) {
  std::string out;
  size_t sentences = 2 + random.below(6);
  for (size_t s = 0; s < sentences; ++s) {
    size_t words = 5 + random.below(20);
    for (size_t w = 0; w < words; ++w) {
      std::string word = random.pick(k_words);
      if (w == 0) word[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(word[0])));
      if (w) out += random.below(20) == 0 ? ", " : " ";
      out += word;
      if (random.below(40) == 0) out += " " + std::to_string(random.below(100000));
    }
    out += random.below(8) == 0 ? "? " : ". ";
  }
  return out + "\n";
}

std::string cjk_paragraph(Random& random) {
  std::string out;
  size_t length = 30 + random.below(120);
  for (size_t i = 0; i < length; ++i) {
    size_t kind = random.below(20);
    if (kind < 13) append_code_point(out, 0x4E00 + static_cast<uint32_t>(random.below(0x5000)));  // hanzi
    else if (kind < 16) append_code_point(out, 0x3041 + static_cast<uint32_t>(random.below(0x55)));  // hiragana
    else if (kind < 18) append_code_point(out, 0xAC00 + static_cast<uint32_t>(random.below(2000)));  // hangul
    else out += random.below(2) ? "，" : "。";
  }
  return out + "\n";
}

// Documents of the built-in mix, about `bytes` in all: prose, code, numbers, CJK, emoji,
// whitespace runs.
std::vector<std::string> builtin_mix(size_t bytes) {
  Random random{0x6e6c61};
  std::vector<std::string> docs;
  size_t total = 0;
  while (total < bytes) {
    std::string doc;
    size_t target = 1000 + random.below(7000);
    while (doc.size() < target) {
      size_t kind = random.below(100);
      if (kind < 50) {
        doc += prose_paragraph(random);
      } else if (kind < 68) {
        for (size_t i = 0, n = 3 + random.below(12); i < n; ++i) doc += random.pick(k_code);
      } else if (kind < 76) {
        for (size_t i = 0, n = 5 + random.below(30); i < n; ++i)
          doc += std::to_string(random.below(1000000)) + (random.below(3) ? "." + std::to_string(random.below(100)) : "") +
                 (random.below(5) ? " " : "\n");
      } else if (kind < 88) {
        doc += cjk_paragraph(random);
      } else if (kind < 94) {
        for (size_t i = 0, n = 2 + random.below(10); i < n; ++i)
          doc += std::string(random.pick(k_words)) + " " + random.pick(k_emoji) + " ";
        doc += "\n";
      } else {
        for (size_t i = 0, n = 2 + random.below(6); i < n; ++i)
          doc += std::string(random.pick(k_spaces)) + random.pick(k_words);
      }
    }
    total += doc.size();
    docs.push_back(std::move(doc));
  }
  return docs;
}

// A user's text file, cut at line ends into documents of about 4 KB.
std::vector<std::string> file_docs(const std::string& path) {
  std::string text = read_file(path);
  std::vector<std::string> docs;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', std::min(text.size(), start + 4096));
    end = end == std::string::npos ? text.size() : end + 1;
    docs.push_back(text.substr(start, end - start));
    start = end;
  }
  return docs;
}

uint32_t checksum_ids(uint32_t checksum, const std::vector<tokenizer::TokenId>& ids) {
  for (auto id : ids) checksum = checksum * 31u + static_cast<uint32_t>(id);
  return checksum;
}

// tests/tools/bench_tokenize_hf.mjs, from the working directory or the source tree.
std::string find_reference_script() {
  std::string path = bundled_file("tests/tools/bench_tokenize_hf.mjs");
  return fs::exists(path) ? fs::absolute(path) : "";
}

struct Reference {
  bool ok = false;
  std::string why;
  int64_t tokens = 0;
  double seconds = 0;
  uint32_t checksum = 0;
  std::string version;
};

Reference run_reference(const BenchOptions& options, const std::vector<std::string>& docs) {
  Reference ref;
  std::string script = find_reference_script();
  if (script.empty()) {
    ref.why = "tests/tools/bench_tokenize_hf.mjs not found";
    return ref;
  }
  std::string docs_path = fs::join(fs::temp_directory(), "nla-bench-docs-" + std::to_string(getpid()) + ".jsonl");
  {
    std::string lines;
    for (const auto& doc : docs) lines += nlohmann::json(doc).dump() + "\n";
    write_file_atomic(docs_path, lines);
  }
  auto quote = [](const std::string& s) {
    std::string out = "'";
    for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
  };
  std::string command = "RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false node " + quote(script) + " " +
                        quote(fs::absolute(bundled_file(options.tokenizer))) + " " + quote(docs_path) + " " +
                        std::to_string(options.repeats) + " 2>&1";
  std::string output;
  if (FILE* pipe = popen(command.c_str(), "r")) {
    char buffer[4096];
    size_t n;
    while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, n);
    int status = pclose(pipe);
    if (status != 0) ref.why = "node failed (status " + std::to_string(status) + "): " + output.substr(0, 200);
  } else {
    ref.why = "cannot run node";
  }
  fs::remove(docs_path);
  if (!ref.why.empty()) return ref;
  try {
    auto line = output.substr(output.rfind('{'));
    auto json = nlohmann::json::parse(line);
    ref.tokens = json.at("tokens").get<int64_t>();
    ref.seconds = json.at("seconds").get<double>();
    ref.checksum = json.at("checksum").get<uint32_t>();
    ref.version = json.at("version").get<std::string>();
    ref.ok = true;
  } catch (const std::exception& e) {
    ref.why = std::string("unreadable reference output: ") + output.substr(0, 200);
  }
  for (char& c : ref.why)
    if (c == '\n') c = ' ';
  return ref;
}

}  // namespace

BenchReport bench_tokenize(const BenchOptions& options) {
  BenchReport report{"tokenize", {}};
  auto load_start = std::chrono::steady_clock::now();
  auto tok = tokenizer::Tokenizer::from_file(bundled_file(options.tokenizer));
  double load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();
  NLA_CHECK_INPUT(options.text_bytes > 0, "option 'text-bytes': expected > 0, got ", options.text_bytes);
  auto docs = options.text.empty() ? builtin_mix(static_cast<size_t>(options.text_bytes)) : file_docs(options.text);
  size_t bytes = 0;
  for (const auto& doc : docs) bytes += doc.size();

  int64_t tokens = 0;
  uint32_t checksum = 0;
  for (const auto& doc : docs) {  // warm-up, as the reference gets
    auto ids = tok.encode(doc);
    tokens += static_cast<int64_t>(ids.size());
    checksum = checksum_ids(checksum, ids);
  }
  double best = 1e30;
  for (int r = 0; r < options.repeats; ++r) {
    auto start = std::chrono::steady_clock::now();
    int64_t count = 0;
    for (const auto& doc : docs) count += static_cast<int64_t>(tok.encode(doc).size());
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    NLA_CHECK(count == tokens, "token count changed between passes");
  }
  const std::string source = options.text.empty() ? "built-in mix" : options.text;
  char note[256];
  std::snprintf(note, sizeof note, "1 thread, best of %d, %.2f MB, %zu docs (%s)", options.repeats, bytes / 1e6,
                docs.size(), source.c_str());
  double ours = tokens / best;
  report.rows.push_back({"nla tokens/s", ours, "tok/s", note});
  report.rows.push_back({"nla MB/s", bytes / best / 1e6, "MB/s", ""});
  report.rows.push_back({"tokens", double(tokens), "tokens", ""});
  report.rows.push_back({"tokenizer load", load_seconds * 1e3, "ms", options.tokenizer});
  if (!options.reference) return report;

  Reference ref = run_reference(options, docs);
  if (!ref.ok) {
    report.rows.push_back({"hf tokens/s", 0, "tok/s", "reference unavailable: " + ref.why});
    return report;
  }
  double theirs = ref.tokens / ref.seconds;
  report.rows.push_back({"hf tokens/s", theirs, "tok/s",
                         "tokenizers " + ref.version + " (Rust, node), RAYON_NUM_THREADS=1, encodeBatch"});
  report.rows.push_back({"ratio nla/hf", ours / theirs, "x", ours >= theirs ? "goal met (>= 1)" : "goal NOT met (< 1)"});
  bool agree = ref.tokens == tokens && ref.checksum == checksum;
  report.rows.push_back({"ids agree", agree ? 1.0 : 0.0, "bool",
                         "tokens nla " + std::to_string(tokens) + " / hf " + std::to_string(ref.tokens) +
                             (ref.checksum == checksum ? ", id checksums equal" : ", id checksums DIFFER")});
  return report;
}

}  // namespace nla::bench
