// nla bench generate: batched KV-cache generation (greedy, or sampled with --temperature) at each of
// --batch-sizes (default 1, 32, 128; --batch N for one size), prompts of --seq-len tokens, --new-tokens
// each (no stop token, so every sequence runs to the cap); then, at B = 32 (or the one size),
// a rollout of 4 x B prompts ending at different steps, in batches and continuously batched.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "bench_model_common.hpp"
#include "device_peak.hpp"
#include "nla/core/atomic_file.hpp"
#include "nla/core/fs.hpp"
#include "nla/core/log.hpp"
#include "nla/core/timing.hpp"
#include "nla/model/generate.hpp"

namespace nla::bench {

namespace {

// llama.cpp on the same weights and prompts (node-llama-cpp, tests/tools/llama_greedy.mjs
// on a GGUF from tests/tools/write_gguf.py), found from the working directory or the
// source tree (bundled_file).
// Returns {seconds of the whole run, seconds of prefill + 1 token}, or {-1, -1} when
// node or the llama.cpp build is absent.
std::pair<double, double> llama_cpp_seconds(model::Qwen2Model& model, const BenchOptions& options,
                                            const std::vector<model::GenerationPrompt>& prompts) {
  bool built = false;
  const std::string llama_dir = bundled_file("third_party/llama");
  if (fs::is_directory(llama_dir))
    for (const auto& name : fs::list_directory(llama_dir)) built = built || name.rfind(".nla-built-", 0) == 0;
  if (!built || std::system("command -v node >/dev/null 2>&1") != 0) {
    log_warn("llama.cpp side-by-side skipped: run tests/tools/setup_llama_cpp.sh from the repository root");
    return {-1, -1};
  }
  std::string dir = fs::join(fs::temp_directory(), "nla-bench-llama." + std::to_string(::getpid()));
  fs::create_directories(dir);
  model::Qwen2Config config = model.config();
  write_file_atomic(dir + "/config.json", config.to_json_text());
  model::save_weights(model, dir, at::kFloat, 1ull << 40);
  fs::copy_file(bundled_file(options.tokenizer), dir + "/tokenizer.json");
  nlohmann::json request = {{"max_new_tokens", options.new_tokens}, {"prompts", nlohmann::json::array()}};
  for (const auto& prompt : prompts) request["prompts"].push_back(prompt.ids);
  write_file_atomic(dir + "/request.json", request.dump());
  std::string command = "/usr/bin/python3 " + bundled_file("tests/tools/write_gguf.py") + " --model " + dir +
                        " --out " + dir + "/model.gguf && node " + bundled_file("tests/tools/llama_greedy.mjs") +
                        " --gguf " + dir + "/model.gguf --request " +
                        dir + "/request.json --threads " + std::to_string(at::get_num_threads()) + " > " + dir +
                        "/out.json";
  std::pair<double, double> seconds{-1, -1};
  if (std::system(command.c_str()) == 0) {
    auto out = nlohmann::json::parse(read_file(dir + "/out.json"));
    seconds = {out["seconds"].get<double>(), out["prefill_seconds"].get<double>()};
  } else {
    log_warn("llama.cpp side-by-side failed: %s", command.c_str());
  }
  fs::remove_all(dir);
  return seconds;
}

// Best of `repeats` timings of body(), in seconds, the device synchronised around each.
template <typename Body>
double best_seconds(int repeats, c10::Device device, Body&& body) {
  double best = 1e30;
  for (int repeat = 0; repeat < repeats; ++repeat) {
    synchronize(device);
    const auto start = std::chrono::steady_clock::now();
    body();
    synchronize(device);
    best = std::min(best, seconds_since(start));
  }
  return best;
}

// Where a decode step's time goes, outside generate(): the same prompts prefilled into a
// KV cache, then the decode steps replayed three ways from the same cache position (the
// attention's context grows as in generate): the blocks alone (compute_logits = false), the
// whole forward (blocks + final norm + LM head, logits at the new token), and the sampler
// alone on one step's logits. What generate's decode step costs beyond the forward and the
// sampler is its own host work (stop checks, finished rows, the next input). Best of
// `repeats` per phase, in ms per step.
struct DecodePhases {
  double blocks_ms = 0, forward_ms = 0, sample_ms = 0;
  double greedy_forward_ms = 0;  // the forward with greedy_tokens: what generate runs when greedy
};

DecodePhases time_decode_phases(const model::Qwen2Model& model, const at::Tensor& ids, const BenchOptions& options) {
  c10::InferenceMode inference;
  const int64_t b = ids.size(0), steps = std::max<int64_t>(options.new_tokens - 1, 1);
  const auto device = model.device();
  model::KVCache cache = model.make_cache(b, ids.size(1) + steps);
  model::ForwardInput prefill;
  prefill.input_ids = ids.to(device);
  model::ForwardOptions last_token;
  last_token.logits_index = at::full({b}, ids.size(1) - 1, at::TensorOptions().dtype(at::kLong).device(device));
  at::Tensor logits = model.forward(prefill, last_token, &cache).logits;  // (B, V)
  const int64_t primed = cache.length;
  // The tokens fed at each step: fixed, so every replay does the same arithmetic. The
  // attention mask as generate passes it (every position a token here: no padding).
  at::Tensor next = at::randint(model.config().vocab_size, {steps, b, 1}, at::kLong).to(device);
  at::Tensor mask = at::ones({b, primed + steps}, at::TensorOptions().dtype(at::kLong).device(device));
  const double ms_per_step = 1e3 / static_cast<double>(steps);
  auto replay = [&](const model::ForwardOptions& forward_options) {
    return ms_per_step * best_seconds(options.repeats, device, [&] {
      cache.length = primed;  // rewinding is free: the steps overwrite the same positions
      for (int64_t step = 0; step < steps; ++step) {
        model::ForwardInput input;
        input.input_ids = next[step];
        input.attention_mask = mask.narrow(1, 0, primed + step + 1);
        model.forward(input, forward_options, &cache);
      }
    });
  };
  DecodePhases phases;
  model::ForwardOptions blocks_only;
  blocks_only.compute_logits = false;
  phases.blocks_ms = replay(blocks_only);
  model::ForwardOptions with_logits;
  with_logits.logits_index = at::zeros({b}, at::TensorOptions().dtype(at::kLong).device(device));
  phases.forward_ms = replay(with_logits);
  model::ForwardOptions greedy = with_logits;
  greedy.greedy_tokens = true;
  phases.greedy_forward_ms = replay(greedy);
  std::vector<at::Generator> generators;
  std::vector<at::Generator*> row_generators;
  for (int64_t i = 0; i < b; ++i) generators.push_back(at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(i)));
  for (auto& generator : generators) row_generators.push_back(&generator);
  const bool on_device = model::device_sampling_from_environment();
  phases.sample_ms = ms_per_step * best_seconds(options.repeats, device, [&] {
    for (int64_t step = 0; step < steps; ++step)
      model::sample_tokens(logits, options.temperature, 1.0, row_generators, on_device);
  });
  return phases;
}

// The rows of one batch size, each metric prefixed "B=<batch> ".
void generate_rows(BenchReport& report, model::Qwen2Model& model, BenchOptions options, int64_t batch,
                   const GemmPeak& peak) {
  options.batch = batch;
  const auto& config = model.config();
  at::Tensor ids = at::randint(config.vocab_size, {options.batch, options.seq_len}, at::kLong);
  std::vector<model::GenerationPrompt> prompts;
  for (int64_t i = 0; i < options.batch; ++i) {
    at::Tensor row = ids[i].contiguous();
    prompts.push_back({std::vector<int64_t>(row.data_ptr<int64_t>(), row.data_ptr<int64_t>() + options.seq_len), {}, {}});
  }
  model::GenerationOptions generation;
  generation.temperature = options.temperature;  // sampled rows: seeds 0..B-1 (the same tokens every repeat)
  auto timed = [&](int64_t new_tokens) {
    generation.max_new_tokens = new_tokens;
    return best_seconds(options.repeats, model.device(), [&] { model::generate(model, prompts, generation); });
  };
  timed(2);  // warm-up
  // Prefill + first token, then the whole run: the difference is the decode loop.
  const double prefill = timed(1);
  const double total = timed(options.new_tokens);
  const double decode = total - prefill;
  const double decode_tokens = static_cast<double>(options.batch * (options.new_tokens - 1));
  const double context = static_cast<double>(options.seq_len) + options.new_tokens / 2.0;
  const double gflops = forward_flops_per_token(config, context) * decode_tokens / decode / 1e9;
  const std::string shape = options.preset + " B=" + std::to_string(options.batch) + " prompt=" +
                            std::to_string(options.seq_len) + " new=" + std::to_string(options.new_tokens) +
                            (options.temperature > 0 ? ", sampled T=" + std::to_string(options.temperature).substr(0, 4)
                                                     : std::string(", greedy")) +
                            ", best of " + std::to_string(options.repeats);
  const std::string b = "B=" + std::to_string(batch) + " ";
  report.rows.push_back({b + "new tokens/s (whole run)", options.batch * options.new_tokens / total, "tok/s", shape});
  report.rows.push_back({b + "decode tokens/s", decode_tokens / decode, "tok/s", "after the first token"});
  const double step_ms = decode * 1e3 / static_cast<double>(options.new_tokens - 1);
  report.rows.push_back({b + "decode ms/step", step_ms, "ms", "one new token for every row"});
  if (model.device().is_cuda()) {  // the other way of the two: captured decode step (NLA_CUDA_GRAPHS)
    const bool graphs = generation.cuda_graphs;
    generation.cuda_graphs = !graphs;
    timed(2);
    const double other_ms = (timed(options.new_tokens) - timed(1)) * 1e3 / static_cast<double>(options.new_tokens - 1);
    generation.cuda_graphs = graphs;
    report.rows.push_back({b + (graphs ? "decode ms/step without CUDA graph" : "decode ms/step with CUDA graph"), other_ms,
                           "ms", graphs ? "NLA_CUDA_GRAPHS unset" : "as NLA_CUDA_GRAPHS=1 (unverified until a GPU run)"});
  }
  const DecodePhases phases = time_decode_phases(model, ids, options);
  report.rows.push_back({b + "decode step: blocks", phases.blocks_ms, "ms", "embedding + blocks, no final norm or LM head"});
  report.rows.push_back({b + "decode step: final norm + LM head", phases.forward_ms - phases.blocks_ms, "ms",
                         "whole forward - blocks"});
  report.rows.push_back({b + "decode step: sampling", phases.sample_ms, "ms",
                         options.temperature > 0 ? "sample_tokens on (B, V) logits" : "argmax on (B, V) logits"});
  const bool greedy = options.temperature <= 0;
  if (greedy)
    report.rows.push_back({b + "decode step: final norm + head + argmax", phases.greedy_forward_ms - phases.blocks_ms,
                           "ms", "in the forward (greedy_tokens), as generate runs it when greedy"});
  const double generate_phases_ms = greedy ? phases.greedy_forward_ms : phases.forward_ms + phases.sample_ms;
  report.rows.push_back({b + "decode step: generate's host work", step_ms - generate_phases_ms, "ms",
                         "decode ms/step - the phases generate runs: stop checks, finished rows, next input (each phase timed in its own replay: within the noise, can be < 0)"});
  report.rows.push_back({b + "prefill tokens/s", options.batch * options.seq_len / prefill, "tok/s", "prefill + 1 token"});
  report.rows.push_back({b + "time whole run", total * 1e3, "ms", ""});
  report.rows.push_back({b + "decode achieved", gflops, "GFLOP/s", ""});
  report.rows.push_back({b + "decode fraction of peak", fraction_of_peak(gflops, peak.gflops), "", ""});
  if (options.reference) {
    auto [llama_total, llama_prefill] = llama_cpp_seconds(model, options, prompts);
    if (llama_total > 0) {
      const double llama_decode = decode_tokens / (llama_total - llama_prefill);
      report.rows.push_back({b + "llama.cpp new tokens/s (whole run)", options.batch * options.new_tokens / llama_total,
                             "tok/s", "node-llama-cpp 3.22.1, same weights (F32 GGUF), same prompts, one run"});
      report.rows.push_back({b + "llama.cpp decode tokens/s", llama_decode, "tok/s", ""});
      report.rows.push_back({b + "nla / llama.cpp (whole run)", llama_total / total, "x", "> 1: nla faster"});
      report.rows.push_back({b + "nla / llama.cpp (decode)", decode_tokens / decode / llama_decode, "x", "goal >= 12 at B=32 (CPU)"});
    }
  }
}

// Continuous batching: 4 x B prompts whose sampled continuations end at different steps
// (each prompt's own token at a spread-out step is a stop token; sampled from a random model,
// tokens hardly repeat, so each sequence ends at its own step), generated as 4 batches of
// B one after another (a batch runs until its longest row ends) and as one call with
// max_batch = B (a finished row takes the next prompt). Same tokens, timed best of repeats.
void rollout_rows(BenchReport& report, const model::Qwen2Model& model, const BenchOptions& options, int64_t batch) {
  const int64_t count = 4 * batch;
  at::Tensor ids = at::randint(model.config().vocab_size, {count, options.seq_len}, at::kLong);
  std::vector<model::GenerationPrompt> prompts;
  for (int64_t i = 0; i < count; ++i) {
    at::Tensor row = ids[i].contiguous();
    prompts.push_back({std::vector<int64_t>(row.data_ptr<int64_t>(), row.data_ptr<int64_t>() + options.seq_len), {}, {}});
  }
  model::GenerationOptions generation;
  generation.max_new_tokens = options.new_tokens;
  generation.max_batch = batch;
  generation.temperature = 1.0;  // prompt i's seed is i in both ways: the same samples
  for (int64_t i = 0; i < count; ++i) generation.seeds.push_back(static_cast<uint64_t>(i));
  const auto free_run = model::generate(model, prompts, generation);
  for (int64_t i = 0; i < count; ++i) {  // prompt i would stop near step (i * 37) % new_tokens
    const auto& tokens = free_run.tokens[static_cast<size_t>(i)];
    generation.stop_token_ids.push_back(tokens[static_cast<size_t>((i * 37) % static_cast<int64_t>(tokens.size()))]);
  }
  model::GenerationResult continuous, batches;
  const double continuous_s = best_seconds(options.repeats, model.device(), [&] {
    continuous = model::generate(model, prompts, generation);
  });
  model::GenerationOptions fixed = generation;
  fixed.max_batch = 0;
  const double batches_s = best_seconds(options.repeats, model.device(), [&] {
    batches = model::GenerationResult{};
    for (int64_t first = 0; first < count; first += batch) {
      std::vector<model::GenerationPrompt> part(prompts.begin() + first, prompts.begin() + first + batch);
      fixed.seeds.assign(generation.seeds.begin() + first, generation.seeds.begin() + first + batch);
      auto result = model::generate(model, part, fixed);
      for (auto& tokens : result.tokens) batches.tokens.push_back(std::move(tokens));
    }
  });
  int64_t differing = 0, first_difference = -1;
  for (size_t i = 0; i < continuous.tokens.size() && i < batches.tokens.size(); ++i) {
    const auto& a = continuous.tokens[i];
    const auto& b = batches.tokens[i];
    if (a == b) continue;
    ++differing;
    const auto at = std::mismatch(a.begin(), a.end(), b.begin(), b.end()).first - a.begin();
    if (first_difference < 0 || at < first_difference) first_difference = at;
  }
  if (differing > 0)
    log_warn("continuous batching gave other tokens than fixed batches in %lld of %lld sequences (earliest at token %lld)",
             static_cast<long long>(differing), static_cast<long long>(count), static_cast<long long>(first_difference));
  double tokens = 0;
  for (const auto& sequence : continuous.tokens) tokens += static_cast<double>(sequence.size());
  const std::string b = "B=" + std::to_string(batch) + " ";
  const std::string shape = std::to_string(count) + " prompts of " + std::to_string(options.seq_len) +
                            ", sampled, stops spread over " + std::to_string(options.new_tokens) + " steps, " +
                            std::to_string(static_cast<int64_t>(tokens)) + " new tokens";
  report.rows.push_back({b + "rollout tokens/s, batches of B", tokens / batches_s, "tok/s", shape});
  report.rows.push_back({b + "rollout tokens/s, continuous batching", tokens / continuous_s, "tok/s",
                         "one call, max_batch = B: a finished row takes the next prompt"});
  report.rows.push_back({b + "continuous / batches", batches_s / continuous_s, "x", "> 1: continuous batching faster"});
}

}  // namespace

BenchReport bench_generate(const BenchOptions& options) {
  BenchReport report{"generate", {}};
  const GemmPeaks peaks = measure_gemm_peaks(options, bench_device(options));
  reset_peak_memory();
  model::Qwen2Model model = bench_model(options);
  const GemmPeak peak = gemm_peak_for(peaks, model.dtype(), at::globalContext().allowTF32CuBLAS());
  const std::vector<int64_t> sizes = options.batch_sizes.empty() ? std::vector<int64_t>{options.batch} : options.batch_sizes;
  for (int64_t batch : sizes) generate_rows(report, model, options, batch, peak);
  for (int64_t batch : sizes)
    if (batch == 32 || sizes.size() == 1) rollout_rows(report, model, options, batch);
  report.rows.push_back({"gemm peak (this run)", peak.gflops, "GFLOP/s", peak.note});
  report.rows.push_back({"peak memory (RSS)", peak_memory_mb(), "MB", "VmHWM after reset"});
  return report;
}

}  // namespace nla::bench
