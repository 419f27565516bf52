// nla extract: corpus -> activation store (HDF5), collectively on every rank.
#include "device_options.hpp"
#include "nla/cli/command.hpp"
#include "nla/core/log.hpp"
#include "nla/extract/extract.hpp"

namespace nla::cli {

class ExtractCommand : public Command {
 public:
  std::string name() const override { return "extract"; }
  std::string summary() const override {
    return "corpus -> activation store (HDF5) for one or many layers, N random positions per document";
  }

  void declare(OptionSet& options) override {
    options.add("extract", "model", &o_.model, "checkpoint directory (config.json, safetensors)");
    options.add("extract", "tokenizer", &o_.tokenizer, "tokenizer.json or its directory (\"\": the model's)");
    options.add("extract", "corpus", &o_.corpus,
                "JSONL (.gz/.zst) files, text-file directories or globs, comma-separated (\"\": the bundled demo corpus)");
    options.add("extract", "text-field", &o_.text_field, "JSONL field holding the text");
    options.add("extract", "id-field", &o_.id_field, "JSONL field holding the document id");
    options.add("extract", "source-field", &o_.source_field, "JSONL field holding the domain");
    options.add("extract", "layers", &o_.layers, "layers to store: 20, 0-27, 1,5,9-11 or all (layer l = output of block l)");
    options.add("extract", "positions-per-doc", &o_.positions_per_doc, "positions sampled per document");
    options.add("extract", "min-position", &o_.min_position, "first token position that may be sampled");
    options.add("extract", "max-tokens", &o_.max_tokens, "documents are truncated to this many tokens");
    options.add("extract", "max-docs", &o_.max_docs, "corpus documents to read (-1: all)");
    options.add("extract", "doc-stride", &o_.doc_stride, "keep every N-th corpus document (a subsample spread over the corpus)");
    options.add("extract", "doc-offset", &o_.doc_offset, "first document kept by doc-stride (offsets differ: disjoint subsamples, e.g. held-out texts)");
    options.add("extract", "seed", &o_.seed, "seed of the position sampling (with the document id)");
    options.add("extract", "batch-docs", &o_.batch_docs, "documents per forward batch");
    declare_device_options(options, "extract", o_.device, o_.precision);
    options.add("extract", "out", &o_.out, "activation store to write (resumes <out>.partial when present)");
    options.add("extract", "checksums", &o_.checksums,
                "Fletcher32 checksums of the stored activations (a flipped bit makes reading the rows an error)");
    options.add("extract", "overwrite", &o_.overwrite, "replace an existing complete store");
    options.add("extract", "kill-after-batches", &o_.kill_after_batches, "testing: SIGKILL rank 0 after this many rounds");
  }

  void run(const RunContext& context) override {
    // The store records the device and precision as attributes (extract.cpp); the log too.
    const auto recorded = with_compute(context, dist::resolve_compute(o_.device, o_.precision));
    auto summary = extract::run_extraction(o_, context.version + " | " + context.command_line,
                                           [&] { recorded.announce(); });
    log_info("extract: wrote %s: %lld samples of %lld documents, %.0f tokens/s over %.1f s%s", o_.out.c_str(),
             static_cast<long long>(summary.samples), static_cast<long long>(summary.documents),
             summary.seconds > 0 ? summary.tokens / summary.seconds : 0.0, summary.seconds,
             summary.resumed ? " (resumed)" : "");
  }

 private:
  extract::ExtractOptions o_;
};

std::unique_ptr<Command> make_extract_command() { return std::make_unique<ExtractCommand>(); }

}  // namespace nla::cli
