// The AdamW update's three kernels (per_tensor, foreach, fused) against each other and
// against a float64 reference of torch.optim.AdamW's formula, over tensors of awkward
// sizes, for several steps with a changing gradient.
//   foreach vs per_tensor on the CPU: bit for bit (the same ATen ops, in the same order);
//   per_tensor vs float64: 2e-6 relative + 1e-7 absolute per element (fp32 rounding of
//     about ten operations per step, four steps);
//   fused vs per_tensor: the same tolerance (its own order of operations, in fp32).
// The fused cases run where LibTorch has the kernel (>= 2.4 on the CPU, >= 2.0 on CUDA)
// and report themselves skipped elsewhere.
#include <gtest/gtest.h>
#include <ATen/ATen.h>

#include <cmath>
#include <cstdlib>
#include <vector>

#include "nla/core/error.hpp"
#include "nla/dist/adamw.hpp"

namespace {

using nla::dist::AdamWKernel;
using nla::dist::AdamWOptions;
using nla::dist::AdamWTensors;

const std::vector<int64_t> kSizes = {1, 7, 64, 1000, 4097};
constexpr int kSteps = 4;

AdamWOptions options_with(AdamWKernel kernel) {
  AdamWOptions options;
  options.lr = 1e-2;
  options.beta1 = 0.9;
  options.beta2 = 0.95;
  options.eps = 1e-8;
  options.weight_decay = 0.1;
  options.kernel = kernel;
  return options;
}

AdamWTensors initial_state(const at::Device& device) {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(7);
  AdamWTensors state;
  for (int64_t size : kSizes) {
    state.params.push_back(at::randn({size}, generator, at::kFloat).to(device));
    state.grads.push_back(at::zeros({size}, at::kFloat).to(device));
    state.exp_avgs.push_back(at::zeros({size}, at::kFloat).to(device));
    state.exp_avg_sqs.push_back(at::zeros({size}, at::kFloat).to(device));
  }
  return state;
}

// Step s's gradient of tensor i: seeded, with magnitudes over four decades.
at::Tensor gradient(int step, size_t i) {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(100 * step + static_cast<int>(i));
  at::Tensor scale = at::pow(10.0, at::rand({kSizes[i]}, generator, at::kFloat) * 4 - 3);
  return at::randn({kSizes[i]}, generator, at::kFloat) * scale;
}

// Runs kSteps updates (lr decaying as a scheduler would) and returns the state on the CPU.
AdamWTensors train(AdamWKernel kernel, const at::Device& device) {
  AdamWTensors state = initial_state(device);
  const AdamWOptions options = options_with(kernel);
  for (int step = 1; step <= kSteps; ++step) {
    for (size_t i = 0; i < kSizes.size(); ++i) state.grads[i].copy_(gradient(step, i));
    nla::dist::adamw_update(state, step, options.lr / step, options);
  }
  for (auto* list : {&state.params, &state.exp_avgs, &state.exp_avg_sqs})
    for (auto& tensor : *list) tensor = tensor.cpu();
  return state;
}

// torch.optim.AdamW's formula in float64, element by element.
AdamWTensors float64_reference() {
  AdamWTensors state = initial_state(at::kCPU);
  const AdamWOptions o = options_with(AdamWKernel::per_tensor);
  for (size_t i = 0; i < kSizes.size(); ++i) {
    at::Tensor p = state.params[i].to(at::kDouble), m = at::zeros_like(p), v = at::zeros_like(p);
    for (int step = 1; step <= kSteps; ++step) {
      const double lr = o.lr / step;
      at::Tensor g = gradient(step, i).to(at::kDouble);
      const double* gp = g.data_ptr<double>();
      double *pp = p.data_ptr<double>(), *mp = m.data_ptr<double>(), *vp = v.data_ptr<double>();
      const double bc1 = 1 - std::pow(o.beta1, step), bc2 = 1 - std::pow(o.beta2, step);
      for (int64_t j = 0; j < p.numel(); ++j) {
        pp[j] *= 1 - lr * o.weight_decay;
        mp[j] = o.beta1 * mp[j] + (1 - o.beta1) * gp[j];
        vp[j] = o.beta2 * vp[j] + (1 - o.beta2) * gp[j] * gp[j];
        pp[j] -= lr / bc1 * mp[j] / (std::sqrt(vp[j]) / std::sqrt(bc2) + o.eps);
      }
    }
    state.params[i] = p;
    state.exp_avgs[i] = m;
    state.exp_avg_sqs[i] = v;
  }
  return state;
}

void expect_close(const AdamWTensors& actual, const AdamWTensors& expected, double rtol, double atol) {
  for (size_t i = 0; i < kSizes.size(); ++i) {
    EXPECT_TRUE(at::allclose(actual.params[i].to(at::kDouble), expected.params[i].to(at::kDouble), rtol, atol))
        << "param " << i << ": max |diff| "
        << (actual.params[i].to(at::kDouble) - expected.params[i].to(at::kDouble)).abs().max().item<double>();
    EXPECT_TRUE(at::allclose(actual.exp_avgs[i].to(at::kDouble), expected.exp_avgs[i].to(at::kDouble), rtol, atol))
        << "exp_avg " << i;
    EXPECT_TRUE(
        at::allclose(actual.exp_avg_sqs[i].to(at::kDouble), expected.exp_avg_sqs[i].to(at::kDouble), rtol, atol))
        << "exp_avg_sq " << i;
  }
}

TEST(AdamWUpdate, PerTensorMatchesFloat64Reference) {
  expect_close(train(AdamWKernel::per_tensor, at::kCPU), float64_reference(), 2e-6, 1e-7);
}

TEST(AdamWUpdate, ForeachIsPerTensorBitForBitOnCpu) {
  const AdamWTensors foreach = train(AdamWKernel::foreach, at::kCPU);
  const AdamWTensors per_tensor = train(AdamWKernel::per_tensor, at::kCPU);
  for (size_t i = 0; i < kSizes.size(); ++i) {
    EXPECT_TRUE(at::equal(foreach.params[i], per_tensor.params[i])) << "param " << i;
    EXPECT_TRUE(at::equal(foreach.exp_avgs[i], per_tensor.exp_avgs[i])) << "exp_avg " << i;
    EXPECT_TRUE(at::equal(foreach.exp_avg_sqs[i], per_tensor.exp_avg_sqs[i])) << "exp_avg_sq " << i;
  }
}

TEST(AdamWUpdate, AutomaticIsForeachUnlessTheEnvironmentChooses) {
  unsetenv("NLA_ADAMW_KERNEL");
  EXPECT_EQ(nla::dist::resolve_adamw_kernel(AdamWKernel::automatic, at::kCPU), AdamWKernel::foreach);
  EXPECT_EQ(nla::dist::resolve_adamw_kernel(AdamWKernel::per_tensor, at::kCPU), AdamWKernel::per_tensor);
  setenv("NLA_ADAMW_KERNEL", "per_tensor", 1);
  EXPECT_EQ(nla::dist::resolve_adamw_kernel(AdamWKernel::automatic, at::kCPU), AdamWKernel::per_tensor);
  EXPECT_EQ(nla::dist::resolve_adamw_kernel(AdamWKernel::foreach, at::kCPU), AdamWKernel::foreach);
  setenv("NLA_ADAMW_KERNEL", "fast", 1);
  EXPECT_THROW(nla::dist::resolve_adamw_kernel(AdamWKernel::automatic, at::kCPU), nla::InputError);
  unsetenv("NLA_ADAMW_KERNEL");
}

TEST(AdamWUpdate, FusedMatchesPerTensorOnCpu) {
  if (!nla::dist::fused_adamw_available(at::kCPU)) {
    // Asking for it anyway is an error naming the version, not a silent fallback.
    AdamWTensors state = initial_state(at::kCPU);
    EXPECT_THROW(nla::dist::adamw_update(state, 1, 1e-3, options_with(AdamWKernel::fused)), nla::Error);
    GTEST_SKIP() << "this LibTorch has no fused AdamW for CPU tensors (2.4 and later have)";
  }
  expect_close(train(AdamWKernel::fused, at::kCPU), train(AdamWKernel::per_tensor, at::kCPU), 2e-6, 1e-7);
}

TEST(AdamWUpdate, CudaKernelsMatchTheCpu) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const AdamWTensors cpu = train(AdamWKernel::per_tensor, at::kCPU);
  expect_close(train(AdamWKernel::foreach, at::kCUDA), cpu, 2e-6, 1e-7);
  expect_close(train(AdamWKernel::per_tensor, at::kCUDA), cpu, 2e-6, 1e-7);
  if (nla::dist::fused_adamw_available(at::kCUDA)) expect_close(train(AdamWKernel::fused, at::kCUDA), cpu, 2e-6, 1e-7);
}

}  // namespace
