// nla verbalize: store rows -> descriptions with an AV checkpoint (ours or the authors').
//
// Rows are split over the MPI ranks in contiguous blocks; rank 0 gathers them and prints or
// writes one JSON line per sample, in row order: {"row", "sample_index", "description",
// "failed", "text"}. Sample j of row r is seeded by (seed, r, j), so the output is the same on
// any rank count and batch size. --out FILE.jsonl is written atomically with a provenance
// sidecar FILE.jsonl.meta.json.
#include <ATen/ATen.h>

#include <nlohmann/json.hpp>

#include <iostream>
#include <sstream>

#include "device_options.hpp"
#include "nla/cli/command.hpp"
#include "nla/core/atomic_file.hpp"
#include "nla/core/error.hpp"
#include "nla/core/log.hpp"
#include "nla/core/world.hpp"
#include "nla/dist/device.hpp"
#include "nla/autoencoder/checkpoint.hpp"
#include "nla/autoencoder/verbalizer.hpp"
#include "nla/store/activation_store.hpp"

namespace nla::cli {

namespace {

// "0,5,7" -> {0, 5, 7}; InputError naming the option otherwise.
std::vector<int64_t> parse_rows(const std::string& text) {
  std::vector<int64_t> rows;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    size_t used = 0;
    int64_t row = -1;
    try {
      row = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    NLA_CHECK_INPUT(used > 0 && used == item.size() && row >= 0,
                    "option 'samples': expected comma-separated row numbers >= 0, got '", text, "'");
    rows.push_back(row);
  }
  NLA_CHECK_INPUT(!rows.empty(), "option 'samples': expected comma-separated row numbers, got '", text, "'");
  return rows;
}

}  // namespace

class VerbalizeCommand : public Command {
 public:
  std::string name() const override { return "verbalize"; }
  std::string summary() const override { return "store activations -> descriptions with an AV checkpoint"; }

  void declare(OptionSet& options) override {
    options.add("verbalize", "av", &av_, "AV checkpoint directory (nla_meta.yaml, config.json, tokenizer.json)");
    options.add("verbalize", "store", &store_, "activation store (from nla extract)");
    options.add("verbalize", "layer", &layer_, "store layer (-1: the AV's critic.extraction_layer_index)");
    options.add("verbalize", "samples", &samples_, "rows to verbalize, e.g. 0,5,7 (\"\": see 'first')");
    options.add("verbalize", "first", &first_, "the first N rows (-1: every row; ignored with 'samples')");
    options.add("verbalize", "out", &out_, "JSONL output (\"\": print the JSON lines on stdout)");
    options.add("verbalize", "temperature", &temperature_, "sampling temperature (0: greedy)");
    options.add("verbalize", "top-p", &top_p_, "nucleus sampling mass, in (0, 1]");
    options.add("verbalize", "seed", &seed_, "sample j of row r is drawn with a seed from (seed, r, j)");
    options.add("verbalize", "samples-per-activation", &samples_per_activation_, "K samples per row");
    options.add("verbalize", "max-new-tokens", &max_new_tokens_, "cap on the answer; an unclosed answer is failed");
    options.add("verbalize", "batch", &batch_, "sequences per generator call (and rows read at a time)");
    declare_device_options(options, "verbalize", device_, precision_);
  }

  void run(const RunContext& given) override {
    const auto compute = dist::resolve_compute(device_, precision_);  // collective: every rank is here
    const auto context = with_compute(given, compute);  // FILE.jsonl.meta.json records it
    NLA_CHECK_INPUT(!av_.empty(), "option 'av': expected an AV checkpoint directory");
    NLA_CHECK_INPUT(!store_.empty(), "option 'store': expected an activation store");
    NLA_CHECK_INPUT(temperature_ >= 0, "option 'temperature': expected >= 0, got ", temperature_);
    NLA_CHECK_INPUT(top_p_ > 0 && top_p_ <= 1, "option 'top-p': expected in (0, 1], got ", top_p_);
    NLA_CHECK_INPUT(samples_per_activation_ > 0, "option 'samples-per-activation': expected > 0, got ",
                    samples_per_activation_);
    NLA_CHECK_INPUT(max_new_tokens_ > 0, "option 'max-new-tokens': expected > 0, got ", max_new_tokens_);
    NLA_CHECK_INPUT(batch_ > 0, "option 'batch': expected > 0, got ", batch_);
    NLA_CHECK_INPUT(seed_ >= 0, "option 'seed': expected >= 0, got ", seed_);
    // Every input check on rank 0 first, so that a bad input is one line and exit 2.
    run_on_root(MPI_COMM_WORLD, [&] { plan(); });
    Plan p = plan();
    store::ActivationStore acts(store_);
    model::LoadOptions load;
    load.device = compute.device;
    load.dtype = compute.dtype;
    auto av = autoencoder::load_av(av_, load);
    auto tok = tokenizer::Tokenizer::from_file(av_);
    autoencoder::Verbalizer verbalizer(av, tok, p.meta.injection_scale, p.meta.actor_template, p.meta.critic_template);
    context.announce();
    autoencoder::VerbalizeOptions options;
    options.max_new_tokens = max_new_tokens_;
    options.temperature = temperature_;
    options.top_p = top_p_;
    options.seed = static_cast<uint64_t>(seed_);
    options.samples_per_activation = samples_per_activation_;
    options.batch = batch_;
    auto results = autoencoder::verbalize_store_rows(verbalizer, acts, p.layer, p.rows, options, MPI_COMM_WORLD);
    run_on_root(MPI_COMM_WORLD, [&] { write(context, p, results); });
  }

 private:
  struct Plan {
    autoencoder::NlaMeta meta;
    int layer = -1;
    std::vector<int64_t> rows;
  };

  // Reads nla_meta.yaml and the store header; InputError for every bad input.
  Plan plan() const {
    Plan p;
    p.meta = autoencoder::NlaMeta::read(av_);
    store::ActivationStore acts(store_);
    p.layer = autoencoder::av_store_layer(p.meta, av_, acts, layer_);
    if (!samples_.empty()) {
      p.rows = parse_rows(samples_);
      for (int64_t row : p.rows)
        NLA_CHECK_INPUT(row < acts.n_samples(), "option 'samples': row ", row, " is outside ", store_, " (",
                        acts.n_samples(), " samples)");
    } else {
      NLA_CHECK_INPUT(first_ >= -1, "option 'first': expected -1 or a count >= 0, got ", first_);
      int64_t count = first_ < 0 ? acts.n_samples() : std::min(first_, acts.n_samples());
      for (int64_t row = 0; row < count; ++row) p.rows.push_back(row);
    }
    return p;
  }

  void write(const RunContext& context, const Plan& p, const std::vector<autoencoder::Verbalization>& results) const {
    int64_t failed = 0;
    std::string lines;
    for (const auto& v : results) {
      failed += v.failed ? 1 : 0;
      nlohmann::json record = {{"row", v.sample_id},
                               {"sample_index", v.sample_index},
                               {"description", v.description},  // the answer, tags kept
                               {"explanation", v.explanation},  // what an AR reads
                               {"failed", v.failed},
                               {"failure", v.failure},
                               {"text", v.text}};
      lines += record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    }
    if (out_.empty()) {
      std::cout << lines << std::flush;
    } else {
      AtomicFile file(out_);
      file.stream() << lines;
      file.commit();
      nlohmann::json meta = {{"provenance", nlohmann::json::parse(context.provenance_json())},
                             {"av", av_},
                             {"store", store_},
                             {"layer", p.layer},
                             {"injection_scale", p.meta.injection_scale},
                             {"rows", static_cast<int64_t>(p.rows.size())},
                             {"samples", static_cast<int64_t>(results.size())},
                             {"failed", failed}};
      write_file_atomic(out_ + ".meta.json", meta.dump(2) + "\n");
    }
    log_info("verbalize: %zu samples of %zu rows (layer %d), %lld failed (no closed <explanation> within %lld "
             "tokens)%s%s",
             results.size(), p.rows.size(), p.layer, static_cast<long long>(failed),
             static_cast<long long>(max_new_tokens_), out_.empty() ? "" : " -> ", out_.c_str());
  }

  std::string av_;
  std::string store_;
  int layer_ = -1;
  std::string samples_;
  int64_t first_ = -1;
  std::string out_;
  double temperature_ = 0.0;
  double top_p_ = 1.0;
  int64_t seed_ = 0;
  int64_t samples_per_activation_ = 1;
  int64_t max_new_tokens_ = 150;
  int64_t batch_ = 32;
  std::string device_ = "auto";
  std::string precision_ = "auto";
};

std::unique_ptr<Command> make_verbalize_command() { return std::make_unique<VerbalizeCommand>(); }

}  // namespace nla::cli
