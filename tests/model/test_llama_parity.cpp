// Greedy tokens of nla equal llama.cpp's (node-llama-cpp 3.22.1, built from source by
// tests/tools/setup_llama_cpp.sh) on a GGUF of the same weights (tests/tools/write_gguf.py).
// Skipped with a message where node or the llama.cpp build is absent.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "model_test_util.hpp"
#include "nla/core/fs.hpp"
#include "nla/model/generate.hpp"
#include "test_support.hpp"

namespace {

namespace fs = nla::fs;

TEST(LlamaCppParity, GreedyTokensMatch) {
  const std::string node = NLA_NODE;
  const std::string llama_dir = nla::test::repo_path("third_party/llama");
  bool built = false;
  if (fs::is_directory(llama_dir))
    for (const auto& name : fs::list_directory(llama_dir)) built = built || name.rfind(".nla-built-", 0) == 0;
  if (node.empty() || node.find("NOTFOUND") != std::string::npos)
    GTEST_SKIP() << "node not found: llama.cpp parity not checked";
  if (!built) GTEST_SKIP() << "llama.cpp not built (run tests/tools/setup_llama_cpp.sh): parity not checked";

  nla::test::TempDir dir;
  // The real vocabulary (so the GGUF carries the real tokenizer) with small blocks; spread
  // weights make the argmax margins large against fp32 summation-order differences.
  auto config = nla::test::small_config(3, 4, 2, 16, 96, 151936, true);
  config.rope_theta = 1000000.0;
  auto model = nla::test::spread_random_model(config, 2024);
  nla::test::write_test_checkpoint(model, dir.path());
  fs::copy_file(nla::test::repo_path("models/tokenizer.json"), dir.file("tokenizer.json"));
  auto gguf = nla::test::run_command(std::string(NLA_SYSTEM_PYTHON) + " " +
                                     nla::test::repo_path("tests/tools/write_gguf.py") + " --model " + dir.path() +
                                     " --out " + dir.file("model.gguf"));
  ASSERT_EQ(gguf.exit_status, 0) << gguf.err;

  std::vector<std::vector<int64_t>> prompts = {
      {9707, 11, 1879, 0}, {785, 6722, 315, 9625, 374}, {151644, 872, 198, 13048, 151645, 198, 151644, 77091, 198}, {42}};
  const int64_t new_tokens = 16;
  nlohmann::json request = {{"prompts", prompts}, {"max_new_tokens", new_tokens}};
  nla::test::write_text(dir.file("request.json"), request.dump());
  auto llama = nla::test::run_command(node + " " + nla::test::repo_path("tests/tools/llama_greedy.mjs") + " --gguf " +
                                      dir.file("model.gguf") + " --request " + dir.file("request.json"));
  ASSERT_EQ(llama.exit_status, 0) << llama.err;
  auto reference = nlohmann::json::parse(llama.out.substr(llama.out.find('{')))["tokens"];

  nla::model::GenerationOptions options;
  options.max_new_tokens = new_tokens;
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto ours = nla::model::generate(model, {nla::model::GenerationPrompt{prompts[i], {}, {}}}, options).tokens[0];
    auto theirs = reference[i].get<std::vector<int64_t>>();
    EXPECT_EQ(ours, theirs) << "prompt " << i;
  }
}

}  // namespace
