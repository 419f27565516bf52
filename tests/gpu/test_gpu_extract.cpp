// nla extract on the GPU against nla extract on the CPU: the same tiny model and corpus
// slice (13 documents, layers 0, 2 and 3, positions from token 20, batches of 3 documents
// with padding), read back with the store reader. The rows (document, position, token),
// the documents' texts and the layers must be identical: they come from the tokenizer and
// the seeded sampling, not from the device. The activations, per stored row r, within
// max |gpu_r - cpu_r| / max |cpu_r| <= tolerance:
//   --precision fp32: 1e-5. The same math in another summation order (cuBLAS vs OpenBLAS,
//   the fused attention kernel of LibTorch 2.x): fp32 rounding over 4 blocks stays near
//   1e-6 of a row's scale; the same bound test_extract puts on batched vs alone.
//   --precision bf16: 5e-2, against the fp32 store. The model is loaded in bf16 (weights
//   rounded to 8 bits of mantissa, ~2e-3 relative each) and computes in it, so the error
//   is the weights' rounding plus every op's, compounded over the blocks. Measured with
//   NLA_GPU_TIER_DEVICE=cpu (CPU bf16, fp32 accumulation as on the GPU): 8.1e-3 at layer 0,
//   1.2e-2 at layer 2, 1.5e-2 at layer 3; about 3x that.
// The store's header says where it was made (device, precision): checked too, so a run
// that ignored --device cannot pass.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>

#include "gpu_test_support.hpp"
#include "nla/core/fs.hpp"
#include "nla/store/activation_store.hpp"

namespace nla::test {
namespace {

class GpuExtract : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!gpu_tier_runs()) return;
    dir_ = new TempDir();
    auto init = init_tiny_model(dir_->file("model"));
    ASSERT_EQ(init.exit_status, 0) << init.err;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  // The first 13 documents of the bundled corpus, as test_extract takes them.
  static std::string extract_args(const std::string& out) {
    return "extract --model " + dir_->file("model") + " --corpus " + repo_path("data/corpus") +
           " --max-docs 13 --layers 0,2-3 --positions-per-doc 4 --min-position 20 --max-tokens 200 --batch-docs 3"
           " --seed 11 --threads 2 --log-level warn --out " + out;
  }

  static TempDir* dir_;
};
TempDir* GpuExtract::dir_ = nullptr;

// Same rows and texts; activations within `tolerance` (per row, relative to its largest
// entry). Prints the worst relative error per layer.
void expect_same_rows_and_close_values(const std::string& value_path, const std::string& reference_path,
                                       double tolerance, const std::string& what) {
  store::ActivationStore value(value_path), reference(reference_path);
  ASSERT_EQ(value.n_samples(), reference.n_samples());
  ASSERT_GT(reference.n_samples(), 20);
  ASSERT_EQ(value.n_documents(), reference.n_documents());
  ASSERT_EQ(value.layers(), reference.layers());
  ASSERT_EQ(value.hidden_size(), reference.hidden_size());
  for (int64_t row = 0; row < reference.n_samples(); ++row) {
    ASSERT_EQ(value.sample_document(row), reference.sample_document(row)) << "row " << row;
    ASSERT_EQ(value.sample_position(row), reference.sample_position(row)) << "row " << row;
    ASSERT_EQ(value.sample_token(row), reference.sample_token(row)) << "row " << row;
  }
  for (int64_t document = 0; document < reference.n_documents(); ++document)
    ASSERT_EQ(value.document_text(document), reference.document_text(document)) << "document " << document;

  const int64_t width = reference.hidden_size();
  for (int layer : reference.layers()) {
    auto x = value.read_rows(layer, 0, value.n_samples()), y = reference.read_rows(layer, 0, reference.n_samples());
    ASSERT_EQ(x.size(), y.size());
    double worst = 0;
    int64_t worst_row = -1;
    for (int64_t row = 0; row < reference.n_samples(); ++row) {
      double difference = 0, scale = 0;
      for (int64_t i = row * width; i < (row + 1) * width; ++i) {
        const size_t at = static_cast<size_t>(i);
        difference = std::max(difference, std::abs(static_cast<double>(x[at]) - y[at]));
        scale = std::max(scale, std::abs(static_cast<double>(y[at])));
      }
      // A NaN anywhere makes the ratio NaN: counted as the worst.
      const double relative = difference / std::max(scale, 1e-30);
      if (!(relative <= worst)) {
        worst = relative;
        worst_row = row;
      }
    }
    std::cout << what << " layer " << layer << ": max relative difference " << worst << " (row " << worst_row
              << ", tolerance " << tolerance << ")\n";
    EXPECT_LE(worst, tolerance) << what << " layer " << layer << ", row " << worst_row;
  }
}

// The store's header names `device` ("cuda" matches "cuda:0") and `precision`.
void expect_made_on(const std::string& path, const std::string& device, const std::string& precision) {
  store::ActivationStore acts(path);
  EXPECT_EQ(acts.header().device.rfind(device, 0), 0u) << path << ": made on '" << acts.header().device << "'";
  EXPECT_EQ(acts.header().precision, precision) << path;
}

TEST_F(GpuExtract, Fp32StoreMatchesTheCpus) {
  NLA_SKIP_WITHOUT_GPU();
  auto cpu = run_nla_on("cpu", "fp32", extract_args(dir_->file("cpu.h5")));
  ASSERT_EQ(cpu.exit_status, 0) << cpu.err;
  auto gpu = run_nla_on(gpu_device(), "fp32", extract_args(dir_->file("gpu_fp32.h5")));
  ASSERT_EQ(gpu.exit_status, 0) << gpu.err;
  expect_made_on(dir_->file("cpu.h5"), "cpu", "fp32");
  expect_made_on(dir_->file("gpu_fp32.h5"), gpu_device(), "fp32");
  expect_same_rows_and_close_values(dir_->file("gpu_fp32.h5"), dir_->file("cpu.h5"), 1e-5, "fp32");
}

TEST_F(GpuExtract, Bf16StoreIsCloseToTheCpusFp32) {
  NLA_SKIP_WITHOUT_GPU();
  if (!fs::exists(dir_->file("cpu.h5"))) {
    auto cpu = run_nla_on("cpu", "fp32", extract_args(dir_->file("cpu.h5")));
    ASSERT_EQ(cpu.exit_status, 0) << cpu.err;
  }
  auto gpu = run_nla_on(gpu_device(), "bf16", extract_args(dir_->file("gpu_bf16.h5")));
  ASSERT_EQ(gpu.exit_status, 0) << gpu.err;
  expect_made_on(dir_->file("gpu_bf16.h5"), gpu_device(), "bf16");
  expect_same_rows_and_close_values(dir_->file("gpu_bf16.h5"), dir_->file("cpu.h5"), 5e-2, "bf16");
}

}  // namespace
}  // namespace nla::test
