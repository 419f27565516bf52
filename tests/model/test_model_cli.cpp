// `nla init-model` and `nla generate` end to end, and bad checkpoints: exit 2 with one
// line naming the file and the tensor or key.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>

#include "model_test_util.hpp"
#include "nla/core/fs.hpp"
#include "test_support.hpp"

namespace {

namespace fs = nla::fs;
using nla::test::run_nla;

std::string tokenizer_option() { return " --tokenizer " + nla::test::repo_path("models/tokenizer.json"); }

std::string ids_line(const std::string& out) {
  auto at = out.find("ids: ");
  return at == std::string::npos ? "" : out.substr(at, out.find('\n', at) - at);
}

// --embedding-std scales the embedding (the tied head) only; every other tensor keeps
// HF's N(0, 0.02) and the same bytes.
TEST(InitModel, EmbeddingStdScalesOnlyTheEmbedding) {
  nla::test::TempDir dir;
  ASSERT_EQ(run_nla("init-model --preset tiny --seed 7 --out " + dir.file("a") + tokenizer_option()).exit_status, 0);
  auto wide = run_nla("init-model --preset tiny --seed 7 --embedding-std 0.5 --out " + dir.file("b") + tokenizer_option());
  ASSERT_EQ(wide.exit_status, 0) << wide.err;
  auto a = nla::model::Qwen2Model::load(dir.file("a"));
  auto b = nla::model::Qwen2Model::load(dir.file("b"));
  auto named_b = b.named_parameters();
  for (auto& [name, tensor] : a.named_parameters()) {
    const at::Tensor other = std::find_if(named_b.begin(), named_b.end(), [&](auto& p) { return p.first == name; })->second;
    if (name == "model.embed_tokens.weight") {
      EXPECT_NEAR(tensor.std().item<double>(), 0.02, 2e-4);
      EXPECT_NEAR(other.std().item<double>(), 0.5, 5e-3);
    } else {
      EXPECT_TRUE(at::equal(tensor, other)) << name;
    }
  }
  auto bad = run_nla("init-model --preset tiny --embedding-std 0 --out " + dir.file("c") + tokenizer_option());
  EXPECT_EQ(bad.exit_status, 2);
  EXPECT_NE(bad.err.find("embedding-std"), std::string::npos) << bad.err;
  EXPECT_FALSE(fs::exists(dir.file("c")));
}

TEST(InitModel, DeterministicForASeedAndShardedEqualsSingle) {
  nla::test::TempDir dir;
  auto a = run_nla("init-model --preset tiny --seed 7 --out " + dir.file("a") + tokenizer_option());
  ASSERT_EQ(a.exit_status, 0) << a.err;
  for (const char* name : {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                           "generation_config.json"})
    EXPECT_TRUE(fs::exists(dir.file("a/") + name)) << name;
  ASSERT_EQ(run_nla("init-model --preset tiny --seed 7 --out " + dir.file("b") + tokenizer_option()).exit_status, 0);
  ASSERT_EQ(run_nla("init-model --preset tiny --seed 8 --out " + dir.file("c") + tokenizer_option()).exit_status, 0);
  std::string weights_a = nla::test::read_text(dir.file("a/model.safetensors"));
  EXPECT_TRUE(weights_a == nla::test::read_text(dir.file("b/model.safetensors"))) << "same seed, different bytes";
  EXPECT_FALSE(weights_a == nla::test::read_text(dir.file("c/model.safetensors"))) << "different seed, same bytes";
  // An existing checkpoint is not overwritten without --overwrite.
  auto again = run_nla("init-model --preset tiny --seed 7 --out " + dir.file("a") + tokenizer_option());
  EXPECT_EQ(again.exit_status, 2);
  EXPECT_NE(again.err.find("--overwrite"), std::string::npos) << again.err;

  // 10 MB shards: the 39 MB embedding alone, then the blocks.
  auto sharded = run_nla("init-model --preset tiny --seed 7 --max-shard-mb 10 --out " + dir.file("s") + tokenizer_option());
  ASSERT_EQ(sharded.exit_status, 0) << sharded.err;
  EXPECT_TRUE(fs::exists(dir.file("s/model.safetensors.index.json")));
  EXPECT_FALSE(fs::exists(dir.file("s/model.safetensors")));
  auto from_single = run_nla("generate --model " + dir.file("a") + " --ids --prompt 1,2,3,4 --max-new-tokens 5");
  auto from_shards = run_nla("generate --model " + dir.file("s") + " --ids --prompt 1,2,3,4 --max-new-tokens 5");
  ASSERT_EQ(from_single.exit_status, 0) << from_single.err;
  ASSERT_EQ(from_shards.exit_status, 0) << from_shards.err;
  EXPECT_EQ(ids_line(from_single.out), ids_line(from_shards.out));
  std::string single_ids = ids_line(from_single.out);
  EXPECT_EQ(std::count(single_ids.begin(), single_ids.end(), ' '), 5) << from_single.out;

  // Text prompts, the chat template, sampling.
  auto text = run_nla("generate --model " + dir.file("a") +
                      " --prompt 'Hello there' --chat --max-new-tokens 4 --temperature 0.7 --top-p 0.9 --seed 3");
  ASSERT_EQ(text.exit_status, 0) << text.err;
  EXPECT_NE(ids_line(text.out), "") << text.out;
}

// A small test checkpoint to break in one way per case.
class BadCheckpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    auto model = nla::test::spread_random_model(nla::test::small_config(2, 4, 2, 8, 40, 53, false), 3);
    nla::test::write_test_checkpoint(model, dir_.path());
  }
  std::string file(const std::string& name) const { return dir_.file(name); }

  // Rewrites model.safetensors with an edited header and the same data area.
  void edit_header(const std::function<void(nlohmann::json&)>& edit) {
    std::string bytes = nla::test::read_text(file("model.safetensors"));
    uint64_t length = 0;
    std::memcpy(&length, bytes.data(), 8);
    nlohmann::json header = nlohmann::json::parse(bytes.substr(8, length));
    edit(header);
    std::string text = header.dump();
    uint64_t new_length = text.size();
    std::string out(8, '\0');
    std::memcpy(out.data(), &new_length, 8);
    nla::test::write_text(file("model.safetensors"), out + text + bytes.substr(8 + length));
  }
  void edit_config(const std::function<void(nlohmann::json&)>& edit) {
    auto config = nlohmann::json::parse(nla::test::read_text(file("config.json")));
    edit(config);
    nla::test::write_text(file("config.json"), config.dump(2));
  }

  // `nla generate` must exit 2 with one line holding every expected part.
  void expect_one_line_error(const std::vector<std::string>& expected) {
    auto result = run_nla("generate --model " + dir_.path() + " --ids --prompt 1,2,3 --max-new-tokens 2");
    EXPECT_EQ(result.exit_status, 2) << result.err;
    std::string err = result.err;
    while (!err.empty() && err.back() == '\n') err.pop_back();
    EXPECT_EQ(err.find('\n'), std::string::npos) << "not one line:\n" << result.err;
    for (const auto& part : expected) EXPECT_NE(err.find(part), std::string::npos) << "'" << part << "' not in: " << err;
  }

  nla::test::TempDir dir_;
};

TEST_F(BadCheckpoint, GoodOneGenerates) {
  auto result = run_nla("generate --model " + dir_.path() + " --ids --prompt 1,2,3 --max-new-tokens 2");
  EXPECT_EQ(result.exit_status, 0) << result.err;
  EXPECT_NE(ids_line(result.out), "");
}

TEST_F(BadCheckpoint, TruncatedFile) {
  std::string bytes = nla::test::read_text(file("model.safetensors"));
  nla::test::write_text(file("model.safetensors"), bytes.substr(0, bytes.size() - 100));
  expect_one_line_error({"model.safetensors", "outside the data area"});
}

TEST_F(BadCheckpoint, HeaderLengthPastTheEnd) {
  std::string bytes = nla::test::read_text(file("model.safetensors"));
  uint64_t length = bytes.size() * 2;
  std::memcpy(bytes.data(), &length, 8);
  nla::test::write_text(file("model.safetensors"), bytes);
  expect_one_line_error({"model.safetensors", "header length", "past the end"});
}

TEST_F(BadCheckpoint, OverlappingOffsets) {
  edit_header([](nlohmann::json& h) {
    auto& offsets = h["model.layers.1.mlp.up_proj.weight"]["data_offsets"];
    uint64_t shift = 16;
    offsets = {offsets[0].get<uint64_t>() - shift, offsets[1].get<uint64_t>() - shift};
  });
  expect_one_line_error({"model.safetensors", "model.layers.1.mlp.up_proj.weight", "overlap"});
}

TEST_F(BadCheckpoint, OffsetsOutsideTheFile) {
  edit_header([](nlohmann::json& h) {
    auto& offsets = h["model.norm.weight"]["data_offsets"];
    offsets = {offsets[0].get<uint64_t>() + 100000, offsets[1].get<uint64_t>() + 100000};
  });
  expect_one_line_error({"model.safetensors", "model.norm.weight", "outside the data area"});
}

TEST_F(BadCheckpoint, UnknownDtype) {
  edit_header([](nlohmann::json& h) { h["lm_head.weight"]["dtype"] = "F8_E9"; });
  expect_one_line_error({"model.safetensors", "lm_head.weight", "unknown dtype 'F8_E9'"});
}

TEST_F(BadCheckpoint, UnsupportedDtype) {
  edit_header([](nlohmann::json& h) {
    h["model.norm.weight"]["dtype"] = "I32";  // same byte count as F32
  });
  expect_one_line_error({"model.safetensors", "model.norm.weight", "dtype I32"});
}

TEST_F(BadCheckpoint, MissingTensor) {
  edit_header([](nlohmann::json& h) { h.erase("model.layers.0.self_attn.k_proj.bias"); });
  expect_one_line_error({"model.safetensors", "missing tensor 'model.layers.0.self_attn.k_proj.bias'"});
}

TEST_F(BadCheckpoint, ShapeMismatchWithConfig) {
  edit_config([](nlohmann::json& c) { c["intermediate_size"] = 48; });
  expect_one_line_error({"model.safetensors", "model.layers.0.mlp.gate_proj.weight", "[40, 32]", "[48, 32]"});
}

TEST_F(BadCheckpoint, MissingConfigKey) {
  edit_config([](nlohmann::json& c) { c.erase("num_key_value_heads"); });
  expect_one_line_error({"config.json", "missing key 'num_key_value_heads'"});
}

TEST_F(BadCheckpoint, UnsupportedConfigFeatures) {
  edit_config([](nlohmann::json& c) { c["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}}; });
  expect_one_line_error({"config.json", "rope_scaling"});
  edit_config([](nlohmann::json& c) {
    c["rope_scaling"] = nullptr;
    c["use_sliding_window"] = true;
  });
  expect_one_line_error({"config.json", "use_sliding_window"});
  edit_config([](nlohmann::json& c) {
    c["use_sliding_window"] = false;
    c["hidden_act"] = "gelu";
  });
  expect_one_line_error({"config.json", "hidden_act"});
}

TEST_F(BadCheckpoint, MissingShardTensorNamesTheIndex) {
  // A sharded checkpoint whose index names a tensor that is in no shard.
  nla::test::TempDir sharded;
  auto model = nla::test::spread_random_model(nla::test::small_config(2, 4, 2, 8, 40, 53, false), 3);
  nla::test::write_test_checkpoint(model, sharded.path(), c10::ScalarType::Float, 8000);
  auto index = nlohmann::json::parse(nla::test::read_text(sharded.file("model.safetensors.index.json")));
  index["weight_map"].erase("model.layers.1.input_layernorm.weight");
  nla::test::write_text(sharded.file("model.safetensors.index.json"), index.dump());
  auto result = run_nla("generate --model " + sharded.path() + " --ids --prompt 1,2,3 --max-new-tokens 2");
  EXPECT_EQ(result.exit_status, 2);
  EXPECT_NE(result.err.find("model.safetensors.index.json: missing tensor 'model.layers.1.input_layernorm.weight'"),
            std::string::npos)
      << result.err;
}

}  // namespace
