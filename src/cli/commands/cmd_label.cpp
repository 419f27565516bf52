// nla label: activation store -> gold descriptions (/descriptions/<name> in the store).
// context and jsonl:FILE run on rank 0; av:DIR verbalizes with an AV checkpoint, the rows
// split over the ranks (rank 0 writes). The dataset records what made it (attributes
// created_by, labeler, failed).
#include <ATen/ATen.h>

#include "device_options.hpp"
#include "nla/cli/command.hpp"
#include "nla/core/atomic_file.hpp"
#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/core/log.hpp"
#include "nla/core/progress.hpp"
#include "nla/core/world.hpp"
#include "nla/dist/device.hpp"
#include "nla/label/labelers.hpp"
#include "nla/nla/checkpoint.hpp"
#include "nla/nla/verbalizer.hpp"
#include "nla/store/hdf5_util.hpp"

namespace nla::cli {

class LabelCommand : public Command {
 public:
  std::string name() const override { return "label"; }
  std::string summary() const override {
    return "activation store -> gold descriptions (labelers: context, jsonl:FILE, av:DIR)";
  }

  void declare(OptionSet& options) override {
    options.add("label", "store", &store_, "activation store (from nla extract)");
    options.add("label", "labeler", &labeler_, "context | jsonl:FILE | av:DIR");
    options.add("label", "name", &name_, "descriptions are stored as /descriptions/<name>");
    options.add("label", "out", &out_, "store to write into (\"\": the input store itself; else a copy)");
    options.add("label", "tokenizer", &tokenizer_, "tokenizer.json or its directory (\"\": the store's model's)");
    options.add("label", "context-tokens", &context_tokens_, "context labeler: tokens of left context quoted");
    options.add("label", "layer", &layer_, "av: store layer (-1: the AV's critic.extraction_layer_index)");
    options.add("label", "temperature", &temperature_, "av: sampling temperature (0: greedy)");
    options.add("label", "top-p", &top_p_, "av: nucleus sampling mass, in (0, 1]");
    options.add("label", "seed", &seed_, "av: row r is sampled with a seed from (seed, r)");
    options.add("label", "max-new-tokens", &max_new_tokens_, "av: cap on the answer; unclosed answers are stored as \"\"");
    options.add("label", "batch", &batch_, "av: sequences per generator call");
    declare_device_options(options, "label", device_, precision_, "av: ");
  }

  void run(const RunContext& context) override {
    NLA_CHECK_INPUT(!store_.empty(), "option 'store': expected an activation store");
    NLA_CHECK_INPUT(!name_.empty() && name_.find('/') == std::string::npos,
                    "option 'name': expected a name without '/', got '", name_, "'");
    NLA_CHECK_INPUT(context_tokens_ >= 0, "option 'context-tokens': expected >= 0, got ", context_tokens_);
    if (labeler_.rfind("av:", 0) == 0) {
      label_with_av(context);
      return;
    }
    // Labelling is cheap next to the model stages: rank 0 does it, the others wait.
    run_on_root(MPI_COMM_WORLD, [&] { label(context); });
  }

 private:
  void label(const RunContext& context) {
    std::vector<std::string> descriptions;
    int64_t n_samples = 0;
    {
      store::ActivationStore acts(store_);
      n_samples = acts.n_samples();
      if (labeler_ == "context") {
        std::string tokenizer_path = tokenizer_.empty() ? acts.header().model : tokenizer_;
        auto tok = tokenizer::Tokenizer::from_file(tokenizer_path);
        label::ContextLabelerOptions options;
        options.context_tokens = context_tokens_;
        context.announce();
        Progress progress("label", n_samples, "samples");
        const int64_t chunk = 256;
        for (int64_t first = 0; first < n_samples; first += chunk) {
          auto part = label::context_descriptions(acts, tok, first, std::min(chunk, n_samples - first), options);
          descriptions.insert(descriptions.end(), part.begin(), part.end());
          progress.set(first + static_cast<int64_t>(part.size()));
        }
        progress.finish();
      } else if (labeler_.rfind("jsonl:", 0) == 0) {
        descriptions = label::jsonl_descriptions(labeler_.substr(6), n_samples);
      } else {
        NLA_INPUT_ERROR("option 'labeler': expected context, jsonl:FILE or av:DIR, got '", labeler_, "'");
      }
    }
    save_descriptions(context, descriptions, 0);
  }

  // av:DIR: every row verbalized at the AV's layer (greedy by default), one sample per row.
  // A failed sample (no closed <explanation> within max-new-tokens) is stored as "" and
  // counted; trainers skip empty descriptions.
  void label_with_av(const RunContext& given) {
    const auto compute = dist::resolve_compute(device_, precision_);  // collective: every rank is here
    const auto context = with_compute(given, compute);  // the dataset's created_by records it
    const std::string av_dir = labeler_.substr(3);
    NLA_CHECK_INPUT(!av_dir.empty(), "option 'labeler': expected av:DIR with an AV checkpoint directory");
    NLA_CHECK_INPUT(temperature_ >= 0, "option 'temperature': expected >= 0, got ", temperature_);
    NLA_CHECK_INPUT(top_p_ > 0 && top_p_ <= 1, "option 'top-p': expected in (0, 1], got ", top_p_);
    NLA_CHECK_INPUT(max_new_tokens_ > 0, "option 'max-new-tokens': expected > 0, got ", max_new_tokens_);
    NLA_CHECK_INPUT(batch_ > 0, "option 'batch': expected > 0, got ", batch_);
    NLA_CHECK_INPUT(seed_ >= 0, "option 'seed': expected >= 0, got ", seed_);
    // Input checks on rank 0 first: a bad input is one line and exit 2.
    run_on_root(MPI_COMM_WORLD, [&] {
      store::ActivationStore acts(store_);
      autoencoder::av_store_layer(autoencoder::NlaMeta::read(av_dir), av_dir, acts, layer_);
    });
    std::vector<autoencoder::Verbalization> results;
    int layer = -1;
    {
      auto meta = autoencoder::NlaMeta::read(av_dir);
      store::ActivationStore acts(store_);
      layer = autoencoder::av_store_layer(meta, av_dir, acts, layer_);
      model::LoadOptions load;
      load.device = compute.device;
      load.dtype = compute.dtype;
      auto av = autoencoder::load_av(av_dir, load);
      auto tok = tokenizer::Tokenizer::from_file(av_dir);
      autoencoder::Verbalizer verbalizer(av, tok, meta.injection_scale, meta.actor_template, meta.critic_template);
      context.announce();
      autoencoder::VerbalizeOptions options;
      options.max_new_tokens = max_new_tokens_;
      options.temperature = temperature_;
      options.top_p = top_p_;
      options.seed = static_cast<uint64_t>(seed_);
      options.batch = batch_;
      std::vector<int64_t> rows(static_cast<size_t>(acts.n_samples()));
      for (int64_t row = 0; row < acts.n_samples(); ++row) rows[static_cast<size_t>(row)] = row;
      results = autoencoder::verbalize_store_rows(verbalizer, acts, layer, rows, options, MPI_COMM_WORLD, "label");
    }
    // Every rank has closed the store before rank 0 opens it for writing.
    NLA_CHECK_MPI(MPI_Barrier(MPI_COMM_WORLD));
    run_on_root(MPI_COMM_WORLD, [&] {
      std::vector<std::string> descriptions;
      int64_t failed = 0;
      for (const auto& v : results) {
        descriptions.push_back(v.failed ? std::string() : v.description);
        failed += v.failed ? 1 : 0;
      }
      if (failed > 0)
        log_warn("label: %lld of %zu samples failed (no closed <explanation> within %lld new tokens); stored as \"\"",
                 static_cast<long long>(failed), results.size(), static_cast<long long>(max_new_tokens_));
      log_info("label: av %s at layer %d", av_dir.c_str(), layer);
      save_descriptions(context, descriptions, failed);
    });
  }

  // Writes /descriptions/<name> into the store (or a copy with --out) with its provenance.
  void save_descriptions(const RunContext& context, const std::vector<std::string>& descriptions, int64_t failed) {
    const int64_t n_samples = static_cast<int64_t>(descriptions.size());
    std::string target = out_.empty() ? store_ : out_;
    auto write = [&](const std::string& path) {
      store::ActivationStore::write_descriptions(path, name_, descriptions);
      store::H5Handle file(NLA_CHECK_H5(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT)));
      store::H5Handle dataset(NLA_CHECK_H5(H5Dopen2(file, ("descriptions/" + name_).c_str(), H5P_DEFAULT)));
      store::write_attribute(dataset, "created_by", context.provenance_json());
      store::write_attribute(dataset, "labeler", labeler_);
      store::write_attribute(dataset, "failed", failed);
    };
    if (target != store_) {
      // Label a copy: write it under a temporary name, rename when labelled.
      std::string temporary = target + ".tmp." + std::to_string(getpid());
      fs::copy_file(store_, temporary);
      write(temporary);
      fs::rename(temporary, target);
    } else {
      write(target);
    }
    log_info("label: %lld descriptions (%s) -> %s:/descriptions/%s", static_cast<long long>(n_samples),
             labeler_.c_str(), target.c_str(), name_.c_str());
    if (!descriptions.empty()) log_info("label: first: %s", descriptions.front().c_str());
  }

  std::string store_;
  std::string labeler_ = "context";
  std::string name_ = "gold";
  std::string out_;
  std::string tokenizer_;
  int context_tokens_ = 12;
  int layer_ = -1;
  double temperature_ = 0.0;
  double top_p_ = 1.0;
  int64_t seed_ = 0;
  int64_t max_new_tokens_ = 150;
  int64_t batch_ = 32;
  std::string device_ = "auto";
  std::string precision_ = "auto";
};

std::unique_ptr<Command> make_label_command() { return std::make_unique<LabelCommand>(); }

}  // namespace nla::cli
