// Helpers of the GPU test tier (tests/gpu, `ctest -L gpu`): whether a CUDA device is
// visible, the device the tier runs on, and `nla` invocations with device options.
//
// Every GPU test begins with NLA_SKIP_WITHOUT_GPU(): without a visible CUDA device it is
// skipped with kNoCudaMessage, which ctest's SKIP_REGULAR_EXPRESSION turns into "Skipped",
// so CPU CI runs the tier and nothing fails there.
//
// NLA_GPU_TIER_DEVICE=cpu runs the tier on the CPU instead (no skip): the comparisons are
// then CPU against CPU, which checks the tests' own plumbing (options, fixtures, resume
// hooks) on a machine without a GPU. Unset or "cuda": the GPU.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <string>
#include <vector>

#include "test_support.hpp"

namespace nla::test {

inline constexpr const char* kNoCudaMessage = "no CUDA device visible";

// LibTorch sees at least one CUDA device.
bool cuda_visible();
// The device the tier tests: "cuda", or NLA_GPU_TIER_DEVICE when set.
std::string gpu_device();
// What --precision auto means on gpu_device(): "bf16" on a GPU, "fp32" on the CPU.
std::string default_precision();
// Whether the tier runs here: a CUDA device is visible, or NLA_GPU_TIER_DEVICE names another.
bool gpu_tier_runs();

// " --device D --precision P" (P empty: the command's default precision).
std::string device_args(const std::string& device, const std::string& precision = "");
// nla ARGUMENTS on `device` in `precision`, one process.
CommandResult run_nla_on(const std::string& device, const std::string& precision, const std::string& arguments);
// "<launcher> -n RANKS <nla> " for a command line of `ranks` processes.
std::string mpirun_nla(int ranks);

// A tiny model (init-model --preset tiny --seed 3) in `directory`.
CommandResult init_tiny_model(const std::string& directory);
// Extraction of the bundled corpus as the CPU tests do it (400 documents, stride 4, 4
// positions each from token 32, at most 160 tokens): `layers` ("1", "all"), default device.
CommandResult extract_tiny_store(const std::string& model, const std::string& layers, const std::string& out);

// EXPECTs that RUN/provenance.json says the command ran on `device` ("cuda" matches
// "cuda:0") in `precision` (not checked when empty).
void expect_ran_on(const std::string& run, const std::string& device, const std::string& precision);

// metrics.jsonl of a run, each record without its timing fields ("ms", throughput), as
// text: equal text is bit-identical numbers.
std::vector<std::string> records_without_timing(const std::string& run);
// The values of `key` in the records of metrics.jsonl whose "split" is `split` (all
// records when `split` is empty), in file order.
std::vector<double> metric_values(const std::string& run, const std::string& key, const std::string& split = "");

}  // namespace nla::test

// Skips the current test (returns from it) when the tier does not run here.
#define NLA_SKIP_WITHOUT_GPU()                                                  \
  do {                                                                          \
    if (!::nla::test::gpu_tier_runs()) GTEST_SKIP() << ::nla::test::kNoCudaMessage; \
  } while (false)
