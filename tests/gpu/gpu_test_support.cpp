// Helpers of the GPU test tier (see gpu_test_support.hpp).
#include "gpu_test_support.hpp"

#include <gtest/gtest.h>
#include <torch/cuda.h>  // defines: torch::cuda::is_available

#include <nlohmann/json.hpp>

#include <cstdlib>

namespace nla::test {

bool cuda_visible() { return torch::cuda::is_available(); }

std::string gpu_device() {
  const char* chosen = std::getenv("NLA_GPU_TIER_DEVICE");
  return chosen && *chosen ? chosen : "cuda";
}

std::string default_precision() { return gpu_device().rfind("cuda", 0) == 0 ? "bf16" : "fp32"; }

bool gpu_tier_runs() { return gpu_device().rfind("cuda", 0) != 0 || cuda_visible(); }

std::string device_args(const std::string& device, const std::string& precision) {
  std::string args = " --device " + device;
  if (!precision.empty()) args += " --precision " + precision;
  return args + " ";
}

CommandResult run_nla_on(const std::string& device, const std::string& precision, const std::string& arguments) {
  return run_nla(arguments + device_args(device, precision));
}

std::string mpirun_nla(int ranks) {
  return std::string(NLA_GPU_MPIEXEC) + " " + std::to_string(ranks) + " " + NLA_GPU_MPIEXEC_PREFLAGS + " " + NLA_BINARY +
         " ";
}

CommandResult init_tiny_model(const std::string& directory) {
  return run_nla("init-model --preset tiny --seed 3 --tokenizer " + repo_path("models/tokenizer.json") + " --out " +
                 directory + " --log-level warn");
}

CommandResult extract_tiny_store(const std::string& model, const std::string& layers, const std::string& out) {
  return run_nla("extract --model " + model + " --corpus " + repo_path("data/corpus") +
                 " --max-docs 400 --doc-stride 4 --layers " + layers +
                 " --positions-per-doc 4 --min-position 32 --max-tokens 160 --batch-docs 8 --seed 0 --threads 2"
                 " --log-level warn --out " + out);
}

void expect_ran_on(const std::string& run, const std::string& device, const std::string& precision) {
  const std::string text = read_text(run + "/provenance.json");
  ASSERT_FALSE(text.empty()) << run << "/provenance.json missing";
  const auto provenance = nlohmann::json::parse(text);
  const std::string ran_on = provenance.value("device", "");
  EXPECT_EQ(ran_on.rfind(device, 0), 0u) << run << ": ran on '" << ran_on << "', expected " << device;
  if (!precision.empty()) {
    EXPECT_EQ(provenance.value("precision", ""), precision) << run;
  }
}

std::vector<std::string> records_without_timing(const std::string& run) {
  std::vector<std::string> records;
  for (auto record : read_jsonl(run + "/metrics.jsonl")) {
    for (const char* timing : {"ms", "seconds", "rollout_tokens_per_s"}) record.erase(timing);
    records.push_back(record.dump());
  }
  return records;
}

std::vector<double> metric_values(const std::string& run, const std::string& key, const std::string& split) {
  std::vector<double> values;
  for (const auto& record : read_jsonl(run + "/metrics.jsonl"))
    if ((split.empty() || record.value("split", "") == split) && record.contains(key) && record[key].is_number())
      values.push_back(record[key].get<double>());
  return values;
}

}  // namespace nla::test
