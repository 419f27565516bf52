// Sampled tokens on the GPU: the device path (NLA_DEVICE_SAMPLING=1: softmax, top-p and the
// inverse CDF on the device, only B ids to the host) against the host path (the logits
// copied to the host, sampled there: the default), on the same CUDA logits and seeds.
// The host path is exactly the CPU sampler on the copied logits (checked first). The device
// path's float64 prefix sum is a parallel scan, so a draw within ~1e-16 of a bin's edge could
// land in the neighbour: over 64 rows x 4 draws x 4 settings that is never expected, and one
// mismatch is allowed. Greedy tokens are the same on both paths by construction (argmax on
// the device) and are checked against the CPU's argmax.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <vector>

#include "gpu_test_support.hpp"
#include "nla/model/generate.hpp"

namespace nla::test {
namespace {

constexpr int64_t kRows = 64;
constexpr int64_t kVocabulary = 151936;

std::vector<at::Generator> seeded_generators() {
  std::vector<at::Generator> generators;
  for (int64_t i = 0; i < kRows; ++i) generators.push_back(at::make_generator<at::CPUGeneratorImpl>(1000 + i));
  return generators;
}

std::vector<at::Generator*> pointers_to(std::vector<at::Generator>& generators) {
  std::vector<at::Generator*> pointers;
  for (auto& generator : generators) pointers.push_back(&generator);
  return pointers;
}

TEST(GpuSampling, DevicePathDrawsTheHostPathsTokens) {
  NLA_SKIP_WITHOUT_GPU();
  const at::Device device(gpu_device());
  auto source = at::make_generator<at::CPUGeneratorImpl>(5);
  // Peaked and flat rows, float32 as the model's logits are after .to(kFloat).
  at::Tensor cpu_logits = at::randn({kRows, kVocabulary}, source, at::kFloat) * 3.0;
  cpu_logits.narrow(0, 0, kRows / 2).narrow(1, 200, 8).add_(12.0);
  const at::Tensor logits = cpu_logits.to(device);

  int mismatches = 0, draws = 0;
  for (double temperature : {0.7, 1.0})
    for (double top_p : {1.0, 0.9}) {
      auto host_generators = seeded_generators(), device_generators = seeded_generators(),
           cpu_generators = seeded_generators();
      for (int round = 0; round < 4; ++round) {
        const auto host = model::sample_tokens(logits, temperature, top_p, pointers_to(host_generators), false);
        const auto on_device = model::sample_tokens(logits, temperature, top_p, pointers_to(device_generators), true);
        const auto cpu = model::sample_tokens(cpu_logits, temperature, top_p, pointers_to(cpu_generators));
        EXPECT_EQ(host, cpu) << "the host path is the CPU sampler; temperature " << temperature << " top_p " << top_p;
        for (int64_t i = 0; i < kRows; ++i) mismatches += host[static_cast<size_t>(i)] != on_device[static_cast<size_t>(i)];
        draws += static_cast<int>(kRows);
      }
    }
  EXPECT_LE(mismatches, 1) << mismatches << " of " << draws << " draws differ between the device and host paths";

  auto unused = seeded_generators();
  const auto greedy = model::sample_tokens(logits, 0.0, 1.0, pointers_to(unused), true);
  at::Tensor expected = cpu_logits.argmax(-1);
  for (int64_t i = 0; i < kRows; ++i) EXPECT_EQ(greedy[static_cast<size_t>(i)], expected[i].item<int64_t>()) << "row " << i;
}

}  // namespace
}  // namespace nla::test
