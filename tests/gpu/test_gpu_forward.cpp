// The Qwen2 forward on the GPU against the same forward on the CPU in fp32: a random model
// of the tiny preset's shape (4 blocks, hidden 64, GQA 4/2, the real vocabulary) with
// unit-scale weights (model_test_util's spread init, so attention is far from uniform), a
// padded batch (left-padded, right-padded and full rows), every block's output captured,
// the logits, and the answer-token log-probs the trainers use (model::token_logprobs).
// Compared on real tokens only (padded positions hold unspecified values).
//
// Error measure: max |gpu - cpu| / max |cpu| over the tensor (nla::test::compare).
//   fp32: 1e-5. Both sides round every op to fp32 (~6e-8); they differ only in summation
//   order (cuBLAS vs OpenBLAS blocking, the fused attention kernel of LibTorch 2.x vs the
//   hand-written one), which over 4 blocks stays near 1e-6 (1.3e-7 measured on an H200 on
//   the CLI path). A wrong mask, position or dtype shows up at 1e-2 or more.
//   bf16: kBf16Tolerance. The weights are the same bf16 values on both sides (a bf16
//   checkpoint, loaded as fp32 for the CPU reference), so what differs is the compute:
//   bf16 keeps 8 bits of mantissa, so every matmul output, norm and residual add rounds
//   to ~2e-3 relative, and those errors compound through the blocks' residual stream.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/GradMode.h>  // c10::NoGradGuard
#include <gtest/gtest.h>

#include <cstdio>
#include <map>

#include "gpu_test_support.hpp"
#include "model/model_test_util.hpp"
#include "nla/core/fs.hpp"
#include "nla/model/qwen2.hpp"
#include "nla/model/qwen2_config.hpp"

namespace nla::test {
namespace {

constexpr double kFp32Tolerance = 1e-5;
// Measured with NLA_GPU_TIER_DEVICE=cpu (CPU bf16 against CPU fp32: bf16 outputs of every
// op, accumulated in fp32, as on the GPU): hidden states 5.4e-3 (block 0) growing to 7.0e-3
// (block 3), logits 9.1e-3, token log-probs 2.6e-3. About 3x that.
constexpr double kBf16Tolerance = 3e-2;

struct Outputs {
  std::map<int64_t, at::Tensor> captured;  // layer -> (B, T, C)
  at::Tensor logits;                       // (B, T, V) float32
  at::Tensor token_logprobs;               // (B, K) float32
};

class GpuForward : public testing::Test {
 protected:
  void SetUp() override {
    NLA_SKIP_WITHOUT_GPU();
    config_ = model::qwen2_preset("tiny");
    model::Qwen2Model model = spread_random_model(config_, 2027);
    for (const char* checkpoint : {"fp32", "bf16"}) fs::create_directories(dir_.file(checkpoint));
    write_test_checkpoint(model, dir_.file("fp32"), at::kFloat);
    write_test_checkpoint(model, dir_.file("bf16"), at::kBFloat16);

    // (3, 40): row 0 left-padded by 7, row 1 right-padded by 11, row 2 full.
    const int64_t b = 3, t = 40;
    auto generator = at::make_generator<at::CPUGeneratorImpl>(99);
    input_ids_ = at::randint(config_.vocab_size, {b, t}, generator, at::kLong);
    mask_ = at::ones({b, t}, at::kLong);
    mask_[0].narrow(0, 0, 7).zero_();
    mask_[1].narrow(0, t - 11, 11).zero_();
    // Log-probs of 5 real positions per row, targets drawn at random.
    logprob_index_ = at::tensor(std::vector<int64_t>{8, 15, 22, 30, 39, 0, 5, 12, 20, 28, 1, 10, 19, 33, 39}).view({b, 5});
    targets_ = at::randint(config_.vocab_size, {b, 5}, generator, at::kLong);
  }

  Outputs run(const std::string& checkpoint, c10::ScalarType dtype, const c10::Device& device) const {
    model::LoadOptions load;
    load.dtype = dtype;
    load.device = device;
    model::Qwen2Model model = model::Qwen2Model::load(dir_.file(checkpoint), load);
    EXPECT_EQ(model.dtype(), dtype);
    EXPECT_EQ(model.device().type(), device.type());
    c10::NoGradGuard no_grad;
    model::ForwardInput input;
    input.input_ids = input_ids_.to(device);
    input.attention_mask = mask_.to(device);
    model::ForwardOptions options;
    options.steering = steering_;
    for (int64_t l = 0; l < config_.num_hidden_layers; ++l) options.capture_layers.push_back(l);
    auto full = model.forward(input, options);
    model::ForwardOptions scoring;
    scoring.steering = steering_;
    scoring.logits_index = logprob_index_.to(device);
    scoring.target_ids = targets_.to(device);
    auto scored = model.forward(input, scoring);
    Outputs out;
    for (auto& [layer, hidden] : full.captured) {
      EXPECT_EQ(hidden.device().type(), device.type()) << "layer " << layer;
      out.captured[layer] = hidden.to(at::kCPU).to(at::kFloat);
    }
    out.logits = full.logits.to(at::kCPU);
    out.token_logprobs = scored.token_logprobs.to(at::kCPU);
    return out;
  }

  // Every output of `value` against `reference` on the real tokens, within `tolerance`.
  void expect_close(const Outputs& value, const Outputs& reference, double tolerance, const std::string& what) const {
    at::Tensor real = mask_.flatten().nonzero().flatten();  // (real tokens)
    auto rows = [&](const at::Tensor& x) { return x.reshape({-1, x.size(-1)}).index_select(0, real); };
    auto check = [&](const std::string& name, const at::Tensor& a, const at::Tensor& b) {
      ErrorStats stats = compare(a, b);
      std::printf("  %-5s %-14s max abs %.3g  max rel %.3g (tolerance %.0e)\n", what.c_str(), name.c_str(),
                  stats.max_abs, stats.max_rel, tolerance);
      EXPECT_LE(stats.max_rel, tolerance) << what << " " << name << ": max abs " << stats.max_abs << ", max rel "
                                          << stats.max_rel << " at " << stats.where;
    };
    ASSERT_EQ(value.captured.size(), static_cast<size_t>(config_.num_hidden_layers));
    for (const auto& [layer, hidden] : reference.captured)
      check("hidden." + std::to_string(layer), rows(value.captured.at(layer)), rows(hidden));
    check("logits", rows(value.logits), rows(reference.logits));
    check("token_logprobs", value.token_logprobs, reference.token_logprobs);
  }

  TempDir dir_;
  model::Qwen2Config config_;
  at::Tensor input_ids_, mask_, logprob_index_, targets_;
  std::vector<model::Steering> steering_;  // nla steer-audit's hook (vectors on the CPU)
};

TEST_F(GpuForward, Fp32MatchesTheCpu) {
  const c10::Device gpu(gpu_device());
  Outputs reference = run("fp32", at::kFloat, c10::Device(at::kCPU));
  Outputs on_gpu = run("fp32", at::kFloat, gpu);
  expect_close(on_gpu, reference, kFp32Tolerance, "fp32");
}

TEST_F(GpuForward, Bf16MatchesTheCpuInFp32) {
  const c10::Device gpu(gpu_device());
  Outputs reference = run("bf16", at::kFloat, c10::Device(at::kCPU));  // bf16 weights, fp32 compute
  Outputs on_gpu = run("bf16", at::kBFloat16, gpu);
  expect_close(on_gpu, reference, kBf16Tolerance, "bf16");
}

// The steering hook on the device: additions after two blocks, one at listed position ids of
// the padded batch, in fp32 and bf16, against the CPU's fp32.
TEST_F(GpuForward, SteeredForwardMatchesTheCpu) {
  const c10::Device gpu(gpu_device());
  auto generator = at::make_generator<at::CPUGeneratorImpl>(7);
  steering_ = {{0, at::randn({config_.hidden_size}, generator), 1.5, {3, 9, 20}},
               {2, at::randn({config_.hidden_size}, generator), -0.75, {}}};
  Outputs reference = run("fp32", at::kFloat, c10::Device(at::kCPU));
  expect_close(run("fp32", at::kFloat, gpu), reference, kFp32Tolerance, "fp32");
  Outputs bf16_reference = run("bf16", at::kFloat, c10::Device(at::kCPU));
  expect_close(run("bf16", at::kBFloat16, gpu), bf16_reference, kBf16Tolerance, "bf16");
}

}  // namespace
}  // namespace nla::test
