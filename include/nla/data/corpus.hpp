// Corpus readers: stream documents (index, id, source, text) from JSONL files (plain, gzip
// or zstd, detected by magic bytes), from plain-text files (one file = one document), from
// directories of either, and from lists/globs of such files, in constant memory.
//
// Order and sharding. The inputs are laid out in one deterministic order: the paths in the
// order given; a directory's files sorted by relative path (bytes), recursively; a glob's
// matches sorted; each file once. Every document that is accepted (not skipped) gets the
// next global index 0, 1, 2, ... in that order, and rank r of n keeps the documents with
// index % n == r. So what a rank sees depends only on (rank, n), and the union over ranks
// is the whole corpus exactly once, with no coordinator and no communication. The price is
// that every rank reads and parses every line (~80 MB/s of JSONL per rank here, orders of
// magnitude faster than the model consumes text); in return the skip counts and input
// errors are identical on every rank, so all ranks fail together on bad input.
//
// Skips and errors. A record is skipped and counted by reason when its text field is
// missing ("missing_text"), is empty or only whitespace ("empty"), or is not valid UTF-8
// ("invalid_utf8", also a JSON line with raw invalid bytes or a lone \ud800 surrogate
// escape). Errors (nla::InputError, one line naming file, line and field): a path that
// cannot be read, a glob that matches nothing, a line that is not JSON or not an object,
// a text/id/source field of the wrong type, a corrupt or truncated compressed stream, and
// a JSONL file none of whose records has the text field (likely a wrong --text-field).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace nla::data {

struct Document {
  int64_t index = -1;   // global position among accepted documents (all ranks)
  std::string id;       // JSONL id field, else "<file name>:<line>"; text files: relative path
  std::string source;   // domain label, e.g. "web", "wiki", "biomedical", "code", "forum"
  std::string text;     // valid UTF-8, not empty
};

enum class CorpusFormat {
  automatic,  // by name: *.jsonl, *.ndjson, *.json (+ .gz/.zst) are JSONL, others text
  jsonl,      // every file is JSONL
  text,       // every file is one plain-text document
};
// "auto" | "jsonl" | "text"; throws InputError otherwise.
CorpusFormat parse_corpus_format(const std::string& name);

struct CorpusOptions {
  // Files, directories or glob patterns (*, ?, [...]). In automatic format a directory
  // that holds JSONL files is read as JSONL shards (other files in it, e.g. a README, are
  // ignored); otherwise every non-hidden regular file in it is a text document.
  std::vector<std::string> paths;
  CorpusFormat format = CorpusFormat::automatic;
  std::string text_field = "text";
  std::string id_field = "id";
  std::string source_field = "source";
  // Source when a record has none. Empty: a JSONL file's stem ("web" for web.jsonl.zst);
  // for a text file its first directory component under the directory given, else "text".
  std::string default_source;
  int rank = 0;          // this reader's shard ...
  int world_size = 1;    // ... of this many
  int64_t max_docs = -1; // stop after this many accepted documents overall (< 0: all)
};

// Skipped records per reason, over the whole corpus read so far (the same on every rank).
struct SkipCounts {
  int64_t missing_text = 0;
  int64_t empty = 0;
  int64_t invalid_utf8 = 0;

  int64_t total() const { return missing_text + empty + invalid_utf8; }
  // {"empty": n, "invalid_utf8": n, "missing_text": n}: for logs and store attributes.
  std::map<std::string, int64_t> by_reason() const;
  // "missing_text=0 empty=3 invalid_utf8=1"
  std::string to_string() const;
};

// One input file after resolving paths, directories and globs.
struct CorpusFile {
  std::string path;      // as opened
  std::string relative;  // id base: path relative to the directory given, else the path
  std::string top_dir;   // first directory component of `relative` ("" at top level)
  bool jsonl = false;
};

// Expands paths into the ordered file list (throws InputError for unreadable paths,
// empty directories and globs that match nothing).
std::vector<CorpusFile> resolve_corpus_files(const CorpusOptions& options);

// "a.jsonl,b/,c/*.zst" -> {"a.jsonl", "b/", "c/*.zst"}: the form --corpus takes.
std::vector<std::string> split_corpus_paths(const std::string& list);

// The committed demo corpus (data/corpus/ in the source tree).
std::string default_corpus_path();

// True when `bytes` is well-formed UTF-8 (no overlong forms, surrogates or > U+10FFFF).
bool is_valid_utf8(const std::string& bytes);

class CorpusReader {
 public:
  explicit CorpusReader(CorpusOptions options);
  ~CorpusReader();
  CorpusReader(const CorpusReader&) = delete;
  CorpusReader& operator=(const CorpusReader&) = delete;

  // The next document of this rank's shard; false at the end of the corpus.
  bool next(Document& doc);

  const SkipCounts& skipped() const { return skipped_; }
  // Accepted documents seen so far over all ranks (== the next global index).
  int64_t documents_seen() const { return next_index_; }
  // Documents returned to this rank so far.
  int64_t documents_returned() const { return returned_; }
  const std::vector<CorpusFile>& files() const { return files_; }
  const CorpusOptions& options() const { return options_; }

 private:
  class FileCursor;
  // Reads the next accepted document of any rank from the files; false at the end.
  bool next_accepted(Document& doc, bool wanted);

  CorpusOptions options_;
  std::vector<CorpusFile> files_;
  size_t file_pos_ = 0;
  std::unique_ptr<FileCursor> cursor_;
  SkipCounts skipped_;
  int64_t next_index_ = 0;
  int64_t returned_ = 0;
};

// Reads the whole corpus once (all shards), e.g. to count it before a run.
struct CorpusSummary {
  int64_t documents = 0;
  int64_t text_bytes = 0;
  std::map<std::string, int64_t> documents_by_source;
  SkipCounts skipped;
};
CorpusSummary summarize_corpus(CorpusOptions options);

}  // namespace nla::data
