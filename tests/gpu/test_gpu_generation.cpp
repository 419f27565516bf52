// Generation on the GPU: the decode step captured as a CUDA graph and replayed
// (GenerationOptions::cuda_graphs, NLA_CUDA_GRAPHS=1) against the eager step on the same
// device, greedy and sampled, with continuous batching (more prompts than rows, sequences
// ending at stop tokens) and without; greedy ids read back every step against every 8 (the
// GPU's default); and the GPU's greedy tokens against the CPU's in fp32.
// The graph replays the eager step's kernels on the same tensors, so the tokens must be
// identical. With NLA_GPU_TIER_DEVICE=cpu the "graph" runs are the static-shape step, eager.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <vector>

#include "gpu_test_support.hpp"
#include "model/model_test_util.hpp"
#include "nla/model/generate.hpp"
#include "nla/model/qwen2.hpp"
#include "nla/model/qwen2_config.hpp"

namespace nla::test {
namespace {

std::vector<model::GenerationPrompt> prompts(int64_t count, int64_t vocabulary) {
  std::vector<model::GenerationPrompt> out;
  for (int64_t i = 0; i < count; ++i) {
    std::vector<int64_t> ids;
    for (int64_t j = 0; j < 5 + (i * 7) % 13; ++j) ids.push_back((i * 7919 + j * 104729) % vocabulary);
    out.push_back({ids, {}, {}});
  }
  return out;
}

TEST(GpuGeneration, CudaGraphDecodeEqualsTheEagerStep) {
  NLA_SKIP_WITHOUT_GPU();
  const at::Device device(gpu_device());
  const model::Qwen2Config config = model::qwen2_preset("tiny");
  model::Qwen2Model cpu_model = spread_random_model(config, 2028);
  model::Qwen2Model model = spread_random_model(config, 2028);
  for (auto& slot : model::qwen2_parameter_slots(model.weights(), config, config.num_hidden_layers, true))
    if (slot.tensor->defined()) *slot.tensor = slot.tensor->to(device);
  const auto batch = prompts(12, config.vocab_size);
  for (double temperature : {0.0, 1.0}) {
    model::GenerationOptions eager;
    eager.max_new_tokens = 24;
    eager.temperature = temperature;
    eager.cuda_graphs = false;
    const auto free_run = model::generate(model, batch, eager);
    eager.stop_token_ids = {free_run.tokens[0][5], free_run.tokens[3][9]};
    for (int64_t max_batch : {0, 5}) {
      eager.max_batch = max_batch;
      model::GenerationOptions graph = eager;
      graph.cuda_graphs = true;
      graph.static_decode_step = !device.is_cuda();  // the CPU check of this test itself
      const auto expected = model::generate(model, batch, eager);
      const auto replayed = model::generate(model, batch, graph);
      EXPECT_EQ(replayed.tokens, expected.tokens) << "temperature " << temperature << " max_batch " << max_batch;
      EXPECT_EQ(replayed.finish_reasons, expected.finish_reasons);
      model::GenerationOptions every_step = eager;  // greedy on a GPU reads ids back every 8 steps by default
      every_step.check_every = 1;
      EXPECT_EQ(model::generate(model, batch, every_step).tokens, expected.tokens) << "ids read back every step";
      if (temperature == 0 && max_batch == 0) {  // fp32 on both: the CPU's greedy tokens
        int64_t same = 0, total = 0;
        const auto cpu = model::generate(cpu_model, batch, eager);
        for (size_t i = 0; i < batch.size(); ++i) {
          total += 1;
          same += cpu.tokens[i] == expected.tokens[i] ? 1 : 0;
        }
        // Summation order differs (cuBLAS vs OpenBLAS): a near-tie may flip one sequence.
        EXPECT_GE(same, total - 1) << same << " of " << total << " sequences equal the CPU's";
      }
    }
  }
}

}  // namespace
}  // namespace nla::test
