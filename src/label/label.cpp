// `nla label` (see label.hpp): the labeler named by --labeler fills one description per
// store row; rank 0 writes them with their provenance.
#include "nla/label/label.hpp"

#include <ATen/ATen.h>
#include <mpi.h>

#include <algorithm>
#include <vector>

#include "nla/autoencoder/checkpoint.hpp"
#include "nla/autoencoder/verbalizer.hpp"
#include "nla/core/atomic_file.hpp"
#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/core/log.hpp"
#include "nla/core/progress.hpp"
#include "nla/core/world.hpp"
#include "nla/label/labelers.hpp"
#include "nla/store/activation_store.hpp"
#include "nla/store/hdf5_util.hpp"
#include "nla/tokenizer/tokenizer.hpp"

namespace nla::label {

namespace {

// Writes /descriptions/<name> into the store (or a copy with --out) with its provenance. Rank 0.
void save_descriptions(const LabelOptions& o, const std::string& created_by, const std::vector<std::string>& descriptions,
                       int64_t failed) {
  const int64_t n_samples = static_cast<int64_t>(descriptions.size());
  const std::string target = o.out.empty() ? o.store : o.out;
  auto write = [&](const std::string& path) {
    store::ActivationStore::write_descriptions(path, o.name, descriptions);
    store::H5Handle file(NLA_CHECK_H5(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT)));
    store::H5Handle dataset(NLA_CHECK_H5(H5Dopen2(file, ("descriptions/" + o.name).c_str(), H5P_DEFAULT)));
    store::write_attribute(dataset, "created_by", created_by);
    store::write_attribute(dataset, "labeler", o.labeler);
    store::write_attribute(dataset, "failed", failed);
  };
  if (target != o.store) {
    // Label a copy: written under a temporary name, renamed when labelled.
    write_path_atomic(target, [&](const std::string& temporary) {
      fs::copy_file(o.store, temporary);
      write(temporary);
    });
  } else {
    write(target);
  }
  log_info("label: %lld descriptions (%s) -> %s:/descriptions/%s", static_cast<long long>(n_samples),
           o.labeler.c_str(), target.c_str(), o.name.c_str());
  if (!descriptions.empty()) log_info("label: first: %s", descriptions.front().c_str());
}

// context and jsonl:FILE: cheap next to the model stages, rank 0 does it.
void label_on_root(const LabelOptions& o, const LabelHooks& hooks) {
  std::vector<std::string> descriptions;
  {
    store::ActivationStore acts(o.store);
    const int64_t n_samples = acts.n_samples();
    if (o.labeler == "context") {
      auto tok = tokenizer::Tokenizer::from_file(o.tokenizer.empty() ? acts.header().model : o.tokenizer);
      ContextLabelerOptions options;
      options.context_tokens = o.context_tokens;
      options.fields = parse_context_fields(o.fields);
      if (hooks.announce) hooks.announce(std::nullopt);
      Progress progress("label", n_samples, "samples");
      const int64_t chunk = 256;
      for (int64_t first = 0; first < n_samples; first += chunk) {
        auto part = context_descriptions(acts, tok, first, std::min(chunk, n_samples - first), options);
        descriptions.insert(descriptions.end(), part.begin(), part.end());
        progress.set(first + static_cast<int64_t>(part.size()));
      }
      progress.finish();
    } else if (o.labeler.rfind("jsonl:", 0) == 0) {
      descriptions = jsonl_descriptions(o.labeler.substr(6), n_samples);
    } else {
      NLA_INPUT_ERROR("option 'labeler': expected context, jsonl:FILE or av:DIR, got '", o.labeler, "'");
    }
  }
  save_descriptions(o, hooks.provenance ? hooks.provenance(std::nullopt) : std::string(), descriptions, 0);
}

// av:DIR: every row verbalized at the AV's layer (greedy by default), one sample per row.
// A failed sample (no closed <explanation> within max-new-tokens) is stored as "" and
// counted; trainers skip empty descriptions.
void label_with_av(const LabelOptions& o, const LabelHooks& hooks) {
  const auto compute = dist::resolve_compute(o.device, o.precision);  // collective: every rank is here
  const std::string av_dir = o.labeler.substr(3);
  NLA_CHECK_INPUT(!av_dir.empty(), "option 'labeler': expected av:DIR with an AV checkpoint directory");
  NLA_CHECK_INPUT(o.temperature >= 0, "option 'temperature': expected >= 0, got ", o.temperature);
  NLA_CHECK_INPUT(o.top_p > 0 && o.top_p <= 1, "option 'top-p': expected in (0, 1], got ", o.top_p);
  NLA_CHECK_INPUT(o.max_new_tokens > 0, "option 'max-new-tokens': expected > 0, got ", o.max_new_tokens);
  NLA_CHECK_INPUT(o.batch > 0, "option 'batch': expected > 0, got ", o.batch);
  NLA_CHECK_INPUT(o.seed >= 0, "option 'seed': expected >= 0, got ", o.seed);
  // Input checks on rank 0 first: a bad input is one line and exit 2.
  run_on_root(MPI_COMM_WORLD, [&] {
    store::ActivationStore acts(o.store);
    autoencoder::av_store_layer(autoencoder::NlaMeta::read(av_dir), av_dir, acts, o.layer);
  });
  std::vector<autoencoder::Verbalization> results;
  int layer = -1;
  {
    auto meta = autoencoder::NlaMeta::read(av_dir);
    store::ActivationStore acts(o.store);
    layer = autoencoder::av_store_layer(meta, av_dir, acts, o.layer);
    model::LoadOptions load;
    load.device = compute.device;
    load.dtype = compute.dtype;
    auto av = autoencoder::load_av(av_dir, load);
    auto tok = tokenizer::Tokenizer::from_file(av_dir);
    autoencoder::Verbalizer verbalizer(av, tok, meta.injection_scale, meta.actor_template, meta.critic_template);
    if (hooks.announce) hooks.announce(compute);
    autoencoder::VerbalizeOptions options;
    options.max_new_tokens = o.max_new_tokens;
    options.temperature = o.temperature;
    options.top_p = o.top_p;
    options.seed = static_cast<uint64_t>(o.seed);
    options.batch = o.batch;
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
               static_cast<long long>(failed), results.size(), static_cast<long long>(o.max_new_tokens));
    log_info("label: av %s at layer %d", av_dir.c_str(), layer);
    save_descriptions(o, hooks.provenance ? hooks.provenance(compute) : std::string(), descriptions, failed);
  });
}

}  // namespace

void run_label(const LabelOptions& o, const LabelHooks& hooks) {
  NLA_CHECK_INPUT(!o.store.empty(), "option 'store': expected an activation store");
  NLA_CHECK_INPUT(!o.name.empty() && o.name.find('/') == std::string::npos,
                  "option 'name': expected a name without '/', got '", o.name, "'");
  NLA_CHECK_INPUT(o.context_tokens >= 0, "option 'context-tokens': expected >= 0, got ", o.context_tokens);
  if (o.labeler == "context") parse_context_fields(o.fields);  // refused here, on every rank
  if (o.labeler.rfind("av:", 0) == 0) {
    label_with_av(o, hooks);
    return;
  }
  run_on_root(MPI_COMM_WORLD, [&] { label_on_root(o, hooks); });
}

}  // namespace nla::label
