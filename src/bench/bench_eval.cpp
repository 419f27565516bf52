// nla bench eval: samples/s of the evaluation sweep and how its time grows with layers and
// samples. A scratch model (preset; `--preset tiny` for the test-sized one), a store of the
// demo corpus, the identity-initialised AR at layer 1 and the base model as the AV; then the
// whole `nla eval` at (layers, samples) = (2, 16), (4, 16), (4, 32) with `new-tokens` as the
// AV's answer cap and `batch` samples per task. Time is the whole sweep (generation, AR,
// gather, metrics, results.h5), best of `repeats`.
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "nla/bench/bench.hpp"
#include "nla/core/atomic_file.hpp"
#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/core/world.hpp"
#include "nla/eval/sweep.hpp"
#include "nla/extract/extract.hpp"
#include "nla/model/qwen2.hpp"
#include "nla/model/qwen2_config.hpp"
#include "nla/autoencoder/checkpoint.hpp"
#include "nla/autoencoder/reconstructor.hpp"

namespace nla::bench {

BenchReport bench_eval(const BenchOptions& options) {
  BenchReport report{"eval", {}};
  char scratch_name[4096] = {0};
  run_on_root(MPI_COMM_WORLD, [&] {
    const std::string path = fs::join(fs::parent(fs::absolute(options.out)), "nla-bench-eval." + std::to_string(getpid()));
    fs::create_directories(path);
    std::snprintf(scratch_name, sizeof scratch_name, "%s", path.c_str());
  });
  NLA_CHECK_MPI(MPI_Bcast(scratch_name, sizeof scratch_name, MPI_CHAR, 0, MPI_COMM_WORLD));
  const std::string scratch = scratch_name;
  std::string model_dir = options.model;
  if (model_dir.empty()) {
    model_dir = scratch + "/model";
    run_on_root(MPI_COMM_WORLD, [&] {
      auto config = model::qwen2_preset(options.preset);
      fs::create_directories(model_dir);
      write_file_atomic(model_dir + "/config.json", config.to_json_text());
      model::write_random_checkpoint(config, 1, model_dir, c10::ScalarType::Float, 1ull << 40);
      fs::copy_file(bundled_file(options.tokenizer), model_dir + "/tokenizer.json");
    });
  }
  auto config = model::Qwen2Config::from_file(model_dir);
  NLA_CHECK_INPUT(config.num_hidden_layers >= 4, "bench eval: the model needs >= 4 layers, ", model_dir, " has ",
                  config.num_hidden_layers);

  extract::ExtractOptions extract_options;
  extract_options.model = model_dir;
  extract_options.layers = "0-3";
  extract_options.max_docs = 64;
  extract_options.positions_per_doc = 4;
  extract_options.min_position = 16;
  extract_options.max_tokens = 128;
  extract_options.out = scratch + "/acts.h5";
  extract::run_extraction(extract_options, "nla bench eval");
  run_on_root(MPI_COMM_WORLD, [&] {
    auto ar = autoencoder::Reconstructor::from_base(model_dir, 1);
    auto s = std::sqrt(static_cast<double>(config.hidden_size));
    autoencoder::save_ar(ar, autoencoder::NlaMeta::defaults("ar", config.hidden_size, 1, s), scratch + "/ar", model_dir);
    auto av = model::Qwen2Model::load(model_dir);
    autoencoder::save_av(av, autoencoder::NlaMeta::defaults("av", config.hidden_size, 1, s), scratch + "/av", model_dir);
  });

  struct Shape {
    int layers;
    int64_t samples;
  };
  std::vector<double> seconds;
  for (Shape shape : {Shape{2, 16}, Shape{4, 16}, Shape{4, 32}}) {
    double best = 1e300;
    for (int repeat = 0; repeat < std::max(1, options.repeats); ++repeat) {
      eval::SweepOptions o;
      o.av = scratch + "/av";
      o.ar = scratch + "/ar";
      o.store = scratch + "/acts.h5";
      o.layers = "0-" + std::to_string(shape.layers - 1);
      o.samples = shape.samples;
      o.batch = std::min<int64_t>(options.batch, shape.samples);
      o.max_new_tokens = options.new_tokens;
      o.pool = 16;
      o.out = scratch + "/run";
      o.overwrite = true;
      NLA_CHECK_MPI(MPI_Barrier(MPI_COMM_WORLD));
      auto start = std::chrono::steady_clock::now();
      eval::run_sweep(o, "nla bench eval");
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    seconds.push_back(best);
    const double items = static_cast<double>(shape.layers * shape.samples);
    char note[256];
    std::snprintf(note, sizeof note, "%.3f s for %d layers x %lld samples (%lld new tokens, batch %lld, %d ranks)",
                  best, shape.layers, static_cast<long long>(shape.samples), static_cast<long long>(options.new_tokens),
                  static_cast<long long>(std::min<int64_t>(options.batch, shape.samples)), world_size());
    report.rows.push_back({"sweep L=" + std::to_string(shape.layers) + " n=" + std::to_string(shape.samples),
                           items / best, "samples/s", note});
  }
  // Growth: the sweep should be linear in layers x samples (generation dominates).
  report.rows.push_back({"time ratio layers 2 -> 4", seconds[1] / seconds[0], "x", "2.0 if linear in layers"});
  report.rows.push_back({"time ratio samples 16 -> 32", seconds[2] / seconds[1], "x", "2.0 if linear in samples"});
  run_on_root(MPI_COMM_WORLD, [&] { fs::remove_all(scratch); });
  return report;
}

}  // namespace nla::bench
