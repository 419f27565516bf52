// Corpus readers: input resolution (paths, directories, globs), JSONL and text-file
// cursors, skip accounting and round-robin sharding by global document index.
#include "nla/data/corpus.hpp"

#include <glob.h>

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/data/line_reader.hpp"

#ifndef NLA_DEFAULT_CORPUS_DIR
#define NLA_DEFAULT_CORPUS_DIR "data/corpus"
#endif

using nlohmann::json;

namespace nla::data {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Name without directory and without .gz/.zst/.zstd and .jsonl/.ndjson/.json/.txt.
std::string file_stem(const std::string& path) {
  std::string name = fs::filename(path);
  for (const char* ext : {".gz", ".zst", ".zstd"})
    if (ends_with(name, ext)) { name.resize(name.size() - std::strlen(ext)); break; }
  for (const char* ext : {".jsonl", ".ndjson", ".json", ".txt"})
    if (ends_with(name, ext)) { name.resize(name.size() - std::strlen(ext)); break; }
  return name;
}

bool is_jsonl_name(const std::string& path) {
  std::string name = fs::filename(path);
  for (const char* ext : {".gz", ".zst", ".zstd"})
    if (ends_with(name, ext)) { name.resize(name.size() - std::strlen(ext)); break; }
  return ends_with(name, ".jsonl") || ends_with(name, ".ndjson") || ends_with(name, ".json");
}

bool has_glob_chars(const std::string& path) { return path.find_first_of("*?[") != std::string::npos; }

bool is_blank(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; });
}

// A JSON scalar as a string (ids may be numbers); InputError for other types.
std::string scalar_field(const json& value, const std::string& where, const std::string& field) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_number_integer()) return std::to_string(value.get<int64_t>());
  if (value.is_number()) return value.dump();
  NLA_INPUT_ERROR(where, ": field \"", field, "\" must be a string or number, got ", value.type_name());
}

// Regular files under root/relative as paths relative to root: recursive, following directory
// symlinks, hidden entries (and what lies under them) left out. `ancestors` holds the real
// paths of the directories being walked, so a symlink back to one of them is not walked again.
void collect_corpus_files(const std::string& root, const std::string& relative, std::vector<std::string>& ancestors,
                          std::vector<std::string>& out) {
  const std::string directory = relative.empty() ? root : fs::join(root, relative);
  const std::string real = fs::weakly_canonical(directory);
  if (std::find(ancestors.begin(), ancestors.end(), real) != ancestors.end()) return;
  std::vector<std::string> names;
  try {
    names = fs::list_directory(directory);
  } catch (const Error& error) {
    NLA_INPUT_ERROR(error.what());  // the corpus is the user's input
  }
  ancestors.push_back(real);
  for (const auto& name : names) {
    if (name[0] == '.') continue;
    const std::string child = relative.empty() ? name : fs::join(relative, name);
    const std::string child_path = fs::join(root, child);
    if (fs::is_directory(child_path)) collect_corpus_files(root, child, ancestors, out);
    else if (fs::is_regular_file(child_path)) out.push_back(child);
  }
  ancestors.pop_back();
}

// Files under `dir`, recursively, sorted by relative path; hidden entries left out.
std::vector<CorpusFile> list_directory(const std::string& dir, CorpusFormat format) {
  std::vector<std::string> relatives;
  std::vector<std::string> ancestors;
  collect_corpus_files(dir, "", ancestors, relatives);
  std::vector<CorpusFile> all;
  for (const auto& relative : relatives) {
    CorpusFile file;
    file.path = fs::join(dir, relative);
    file.relative = relative;
    const size_t slash = relative.find('/');
    file.top_dir = slash == std::string::npos ? "" : relative.substr(0, slash);
    file.jsonl = format == CorpusFormat::jsonl || (format == CorpusFormat::automatic && is_jsonl_name(file.path));
    all.push_back(std::move(file));
  }
  std::sort(all.begin(), all.end(), [](const CorpusFile& a, const CorpusFile& b) { return a.relative < b.relative; });
  // Automatic: a directory with JSONL shards is a JSONL corpus; its other files (README,
  // licences) are not documents.
  if (format == CorpusFormat::automatic &&
      std::any_of(all.begin(), all.end(), [](const CorpusFile& f) { return f.jsonl; }))
    all.erase(std::remove_if(all.begin(), all.end(), [](const CorpusFile& f) { return !f.jsonl; }), all.end());
  if (all.empty()) NLA_INPUT_ERROR(dir, ": directory holds no corpus files");
  return all;
}

CorpusFile single_file(const std::string& path, CorpusFormat format) {
  CorpusFile file;
  file.path = path;
  file.relative = fs::filename(path);
  file.jsonl = format == CorpusFormat::jsonl || (format == CorpusFormat::automatic && is_jsonl_name(path));
  return file;
}

void add_path(const std::string& path, CorpusFormat format, std::vector<CorpusFile>& out) {
  if (fs::is_directory(path)) {
    auto files = list_directory(path, format);
    out.insert(out.end(), files.begin(), files.end());
  } else if (fs::exists(path)) {
    out.push_back(single_file(path, format));
  } else if (has_glob_chars(path)) {
    glob_t matches{};
    int rc = ::glob(path.c_str(), 0, nullptr, &matches);  // sorted by glob(3)
    std::vector<std::string> names(matches.gl_pathv, matches.gl_pathv + (rc == 0 ? matches.gl_pathc : 0));
    globfree(&matches);
    if (names.empty()) NLA_INPUT_ERROR(path, ": corpus pattern matches no file");
    for (const auto& name : names) add_path(name, format, out);
  } else {
    NLA_INPUT_ERROR(path, ": corpus path does not exist");
  }
}

}  // namespace

CorpusFormat parse_corpus_format(const std::string& name) {
  if (name == "auto") return CorpusFormat::automatic;
  if (name == "jsonl") return CorpusFormat::jsonl;
  if (name == "text") return CorpusFormat::text;
  NLA_INPUT_ERROR("corpus format \"", name, "\": expected auto, jsonl or text");
}

std::map<std::string, int64_t> SkipCounts::by_reason() const {
  return {{"missing_text", missing_text}, {"empty", empty}, {"invalid_utf8", invalid_utf8}};
}

std::string SkipCounts::to_string() const {
  return str("missing_text=", missing_text, " empty=", empty, " invalid_utf8=", invalid_utf8);
}

std::vector<std::string> split_corpus_paths(const std::string& list) {
  std::vector<std::string> paths;
  std::stringstream in(list);
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty()) paths.push_back(item);
  return paths;
}

std::string default_corpus_path() { return NLA_DEFAULT_CORPUS_DIR; }

bool is_valid_utf8(const std::string& bytes) {
  const auto* s = reinterpret_cast<const unsigned char*>(bytes.data());
  size_t n = bytes.size(), i = 0;
  while (i < n) {
    // Fast path: 8 ASCII bytes at a time.
    while (i + 8 <= n) {
      uint64_t word;
      std::memcpy(&word, s + i, 8);
      if (word & 0x8080808080808080ULL) break;
      i += 8;
    }
    if (i >= n) break;
    unsigned char c = s[i];
    if (c < 0x80) { ++i; continue; }
    size_t len;
    uint32_t min, cp;
    if ((c & 0xE0) == 0xC0) { len = 2; min = 0x80; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { len = 3; min = 0x800; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { len = 4; min = 0x10000; cp = c & 0x07; }
    else return false;
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

std::vector<CorpusFile> resolve_corpus_files(const CorpusOptions& options) {
  NLA_CHECK_INPUT(!options.paths.empty(), "corpus: no input path given");
  std::vector<CorpusFile> files;
  for (const auto& path : options.paths) add_path(path, options.format, files);
  // Each file once, at its first place, however many paths reach it.
  std::set<std::string> seen;
  std::vector<CorpusFile> unique;
  for (auto& file : files) {
    if (seen.insert(fs::weakly_canonical(file.path)).second) unique.push_back(std::move(file));
  }
  return unique;
}

// ---- cursors over one file ----------------------------------------------------------------

// Reads one file; next() returns the next accepted document (any rank), counting skips.
class CorpusReader::FileCursor {
 public:
  FileCursor(const CorpusFile& file, const CorpusOptions& options, SkipCounts& skipped)
      : file_(file), options_(options), skipped_(skipped), lines_(file.path) {}

  // `wanted`: false when the document belongs to another rank, so its fields need not be
  // copied out; it is still parsed and checked, since acceptance decides the index.
  bool next(Document& doc, bool wanted) { return file_.jsonl ? next_jsonl(doc, wanted) : next_text(doc, wanted); }

 private:
  std::string where() const { return str(file_.path, ":", lines_.line_number()); }

  bool next_text(Document& doc, bool wanted) {
    if (done_) return false;
    done_ = true;
    std::string text;
    lines_.read_rest(text);
    if (text.size() >= 3 && text.compare(0, 3, "\xEF\xBB\xBF") == 0) text.erase(0, 3);  // BOM
    if (!is_valid_utf8(text)) { ++skipped_.invalid_utf8; return false; }
    if (is_blank(text)) { ++skipped_.empty; return false; }
    if (wanted) {
      doc.id = file_.relative;
      doc.source = !file_.top_dir.empty() ? file_.top_dir
                   : !options_.default_source.empty() ? options_.default_source : "text";
      doc.text = std::move(text);
    }
    return true;
  }

  bool next_jsonl(Document& doc, bool wanted) {
    std::string line;
    while (lines_.next(line)) {
      if (lines_.line_number() == 1 && line.compare(0, 3, "\xEF\xBB\xBF") == 0) line.erase(0, 3);
      if (is_blank(line)) continue;
      // Raw invalid bytes: nlohmann would call it a syntax error; it is an encoding problem.
      if (!is_valid_utf8(line)) { ++skipped_.invalid_utf8; continue; }
      json record;
      try {
        record = json::parse(line);
      } catch (const json::parse_error& e) {
        // A lone \ud800-\udfff escape (e.g. from Python's surrogateescape) is not text.
        if (std::string(e.what()).find("surrogate") != std::string::npos) { ++skipped_.invalid_utf8; continue; }
        std::string message = e.what();
        std::replace(message.begin(), message.end(), '\n', ' ');
        NLA_INPUT_ERROR(where(), ": not a JSON line: ", message);
      }
      if (!record.is_object()) NLA_INPUT_ERROR(where(), ": expected a JSON object, got ", record.type_name());
      ++objects_;
      auto text_it = record.find(options_.text_field);
      if (text_it == record.end() || text_it->is_null()) { ++skipped_.missing_text; continue; }
      ++with_text_;
      if (!text_it->is_string())
        NLA_INPUT_ERROR(where(), ": field \"", options_.text_field, "\" must be a string, got ", text_it->type_name());
      const auto& text = text_it->get_ref<const std::string&>();
      if (is_blank(text)) { ++skipped_.empty; continue; }
      if (wanted) {
        auto id_it = record.find(options_.id_field);
        doc.id = id_it != record.end() && !id_it->is_null() ? scalar_field(*id_it, where(), options_.id_field)
                                                             : str(file_.relative, ":", lines_.line_number());
        auto source_it = record.find(options_.source_field);
        doc.source = source_it != record.end() && !source_it->is_null()
                         ? scalar_field(*source_it, where(), options_.source_field)
                     : !options_.default_source.empty() ? options_.default_source
                                                        : file_stem(file_.path);
        doc.text = std::move(text_it->get_ref<std::string&>());
      }
      return true;
    }
    // Every record lacks the text field: almost surely the wrong field name, not sparse data.
    if (objects_ > 0 && with_text_ == 0)
      NLA_INPUT_ERROR(file_.path, ": field \"", options_.text_field, "\" is missing on all ", objects_,
                      " lines (set the text field name)");
    return false;
  }

  const CorpusFile& file_;
  const CorpusOptions& options_;
  SkipCounts& skipped_;
  LineReader lines_;
  bool done_ = false;      // text files: the one document was read
  int64_t objects_ = 0;    // lines parsed as JSON objects (not skipped for their encoding)
  int64_t with_text_ = 0;  // objects that have the text field
};

// ---- the reader ---------------------------------------------------------------------------

CorpusReader::CorpusReader(CorpusOptions options) : options_(std::move(options)) {
  NLA_CHECK_INPUT(options_.world_size >= 1 && options_.rank >= 0 && options_.rank < options_.world_size,
                  "corpus: rank ", options_.rank, " is outside the world of size ", options_.world_size);
  NLA_CHECK_INPUT(!options_.text_field.empty(), "corpus: the text field name is empty");
  files_ = resolve_corpus_files(options_);
}

CorpusReader::~CorpusReader() = default;

bool CorpusReader::next_accepted(Document& doc, bool wanted) {
  while (file_pos_ < files_.size()) {
    if (!cursor_) cursor_ = std::make_unique<FileCursor>(files_[file_pos_], options_, skipped_);
    if (cursor_->next(doc, wanted)) return true;
    cursor_.reset();
    ++file_pos_;
  }
  return false;
}

bool CorpusReader::next(Document& doc) {
  for (;;) {
    if (options_.max_docs >= 0 && next_index_ >= options_.max_docs) return false;
    bool wanted = next_index_ % options_.world_size == options_.rank;
    if (!next_accepted(doc, wanted)) return false;
    int64_t index = next_index_++;
    if (wanted) {
      doc.index = index;
      ++returned_;
      return true;
    }
  }
}

CorpusSummary summarize_corpus(CorpusOptions options) {
  options.rank = 0;
  options.world_size = 1;
  CorpusReader reader(std::move(options));
  CorpusSummary summary;
  Document doc;
  while (reader.next(doc)) {
    ++summary.documents;
    summary.text_bytes += static_cast<int64_t>(doc.text.size());
    ++summary.documents_by_source[doc.source];
  }
  summary.skipped = reader.skipped();
  return summary;
}

}  // namespace nla::data
