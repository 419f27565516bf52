// The model against an independent float64 numpy forward (tests/tools/qwen2_numpy_ref.py):
// logits and every block's output, for several shapes and a padded batch.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "model_test_util.hpp"
#include "nla/io/safetensors.hpp"
#include "nla/model/qwen2.hpp"
#include "test_support.hpp"

namespace {

// fp32 vs float64: every op rounds to ~6e-8 relative; sums over a few hundred terms and
// a few blocks grow that to ~1e-6 of the tensor's scale. 1e-4 leaves room for summation
// order (BLAS blocking) while catching any real mistake (a wrong sign, scale or position
// shows up at 1e-2 or more).
constexpr double kMaxRelativeError = 1e-4;

at::Tensor read_f64(const nla::io::SafetensorsFile& file, const std::string& name) {
  const auto* info = file.find(name);
  if (!info) throw std::runtime_error("reference output lacks " + name);
  at::Tensor tensor = at::empty(info->shape, at::kDouble);
  std::memcpy(tensor.data_ptr(), file.data(*info), info->num_bytes());
  return tensor;
}

struct Case {
  std::string name;
  nla::model::Qwen2Config config;
  c10::ScalarType checkpoint_dtype;
  std::vector<std::vector<int64_t>> ids;   // (B, T) padded
  std::vector<std::vector<int64_t>> mask;  // (B, T)
  std::vector<nla::model::Steering> steering;  // the vectors are (C) float32
};

nlohmann::json steering_json(const std::vector<nla::model::Steering>& steering) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& steer : steering) {
    at::Tensor v = steer.vector.to(at::kDouble).contiguous();
    list.push_back({{"layer", steer.layer},
                    {"scale", steer.scale},
                    {"positions", steer.positions},
                    {"vector", std::vector<double>(v.data_ptr<double>(), v.data_ptr<double>() + v.numel())}});
  }
  return list;
}

void check_case(const Case& c) {
  SCOPED_TRACE(c.name);
  nla::test::TempDir dir;
  {
    nla::model::Qwen2Model model = nla::test::spread_random_model(c.config, 1234);
    nla::test::write_test_checkpoint(model, dir.path(), c.checkpoint_dtype);
  }
  nlohmann::json request = {{"input_ids", c.ids}, {"attention_mask", c.mask}, {"steering", steering_json(c.steering)}};
  nla::test::write_text(dir.file("input.json"), request.dump());
  auto run = nla::test::run_command(std::string(NLA_SYSTEM_PYTHON) + " " +
                                    nla::test::repo_path("tests/tools/qwen2_numpy_ref.py") + " --model " + dir.path() +
                                    " --input " + dir.file("input.json") + " --out " + dir.file("ref.safetensors"));
  ASSERT_EQ(run.exit_status, 0) << run.err;
  nla::io::SafetensorsFile reference(dir.file("ref.safetensors"));

  nla::model::Qwen2Model model = nla::model::Qwen2Model::load(dir.path());
  const int64_t b = static_cast<int64_t>(c.ids.size()), t = static_cast<int64_t>(c.ids[0].size());
  std::vector<int64_t> flat_ids, flat_mask;
  for (int64_t i = 0; i < b; ++i)
    for (int64_t j = 0; j < t; ++j) {
      flat_ids.push_back(c.ids[i][j]);
      flat_mask.push_back(c.mask[i][j]);
    }
  nla::model::ForwardInput input;
  input.input_ids = at::tensor(flat_ids, at::kLong).view({b, t});
  input.attention_mask = at::tensor(flat_mask, at::kLong).view({b, t});
  nla::model::ForwardOptions options;
  options.steering = c.steering;
  for (int64_t l = 0; l < c.config.num_hidden_layers; ++l) options.capture_layers.push_back(l);
  auto out = model.forward(input, options);

  // Only real tokens are compared (padded positions hold unspecified values).
  at::Tensor real = input.attention_mask.flatten().nonzero().flatten();
  auto rows = [&](const at::Tensor& x) { return x.reshape({b * t, x.size(-1)}).index_select(0, real); };
  auto check = [&](const std::string& what, const at::Tensor& value, const at::Tensor& ref) {
    auto stats = nla::test::compare(rows(value), rows(ref));
    std::printf("  %-18s %-10s max abs %.3g  max rel %.3g\n", c.name.c_str(), what.c_str(), stats.max_abs,
                stats.max_rel);
    EXPECT_LE(stats.max_rel, kMaxRelativeError)
        << what << ": max abs error " << stats.max_abs << ", max rel " << stats.max_rel << " at (real row, column) "
        << stats.where;
  };
  check("logits", out.logits, read_f64(reference, "logits"));
  for (int64_t l = 0; l < c.config.num_hidden_layers; ++l)
    check("hidden." + std::to_string(l), out.captured.at(l), read_f64(reference, "hidden." + std::to_string(l)));
}

std::vector<std::vector<int64_t>> ones(int64_t b, int64_t t) {
  return std::vector<std::vector<int64_t>>(static_cast<size_t>(b), std::vector<int64_t>(static_cast<size_t>(t), 1));
}

TEST(NumpyReference, GqaUntiedHead) {
  check_case({"gqa3-untied", nla::test::small_config(3, 6, 2, 8, 72, 97, false), at::kFloat,
              {{5, 17, 3, 96, 0, 42, 42, 7, 11, 60, 2}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}},
              ones(2, 11), {}});
}

TEST(NumpyReference, MhaTiedOddIntermediateBf16Checkpoint) {
  check_case({"mha-tied-bf16", nla::test::small_config(2, 5, 5, 8, 53, 101, true), at::kBFloat16,
              {{100, 0, 50, 25, 12, 6, 3, 1, 99}}, ones(1, 9), {}});
}

TEST(NumpyReference, MqaTiedWideHeads) {
  auto config = nla::test::small_config(2, 4, 1, 16, 100, 67, true);
  config.rope_theta = 1000000.0;
  check_case({"mqa-tied", config, at::kFloat, {{3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 38 % 67}}, ones(1, 18), {}});
}

TEST(NumpyReference, PaddedBatchLeftAndRight) {
  // Row 0 left-padded, row 1 right-padded, row 2 full: positions follow the mask.
  check_case({"padded-batch", nla::test::small_config(3, 6, 2, 8, 72, 97, false), at::kFloat,
              {{0, 0, 0, 5, 17, 3, 96, 8}, {5, 17, 3, 96, 8, 0, 0, 0}, {9, 8, 7, 6, 5, 4, 3, 2}},
              {{0, 0, 0, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 1, 0, 0, 0}, {1, 1, 1, 1, 1, 1, 1, 1}}, {}});
}

// Steering: scale * v added after a block (every position; and only at given position ids of
// a padded batch, where position ids follow the mask), checked at every later block and the
// logits against the float64 forward that adds the same vector by hand.
TEST(NumpyReference, SteeringAfterABlock) {
  const auto config = nla::test::small_config(3, 6, 2, 8, 72, 97, false);
  auto generator = at::make_generator<at::CPUGeneratorImpl>(77);
  const int64_t c = config.hidden_size;
  nla::model::Steering everywhere{1, at::randn({c}, generator), 2.5, {}};
  check_case({"steer-all", config, at::kFloat, {{5, 17, 3, 96, 0, 42, 42, 7, 11}}, ones(1, 9), {everywhere}});
  nla::model::Steering some{0, at::randn({c}, generator), -1.5, {1, 4}};
  nla::model::Steering later{2, at::randn({c}, generator), 0.75, {}};
  check_case({"steer-positions", config, at::kFloat,
              {{0, 0, 0, 5, 17, 3, 96, 8}, {5, 17, 3, 96, 8, 0, 0, 0}, {9, 8, 7, 6, 5, 4, 3, 2}},
              {{0, 0, 0, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 1, 0, 0, 0}, {1, 1, 1, 1, 1, 1, 1, 1}},
              {some, later}});
}

}  // namespace
