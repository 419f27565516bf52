// Safetensors reader/writer, sharded checkpoints, and the header validation on bad files.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/io/safetensors.hpp"
#include "test_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

using nla::io::DType;

// A raw file: 8-byte length + header text + data bytes (no validation, to build bad files).
std::string raw_file(const std::string& header, size_t data_bytes, uint64_t length_override = 0) {
  uint64_t length = length_override ? length_override : header.size();
  std::string bytes(8, '\0');
  std::memcpy(bytes.data(), &length, 8);
  bytes += header;
  bytes += std::string(data_bytes, '\x01');
  return bytes;
}

// The InputError message of opening `bytes` as a file ("" when it opens).
std::string open_error(const nla::test::TempDir& dir, const std::string& bytes) {
  std::string path = dir.file("bad.safetensors");
  nla::test::write_text(path, bytes);
  try {
    nla::io::SafetensorsFile file(path);
  } catch (const nla::InputError& error) {
    return error.what();
  }
  return "";
}

TEST(Safetensors, RoundTripKeepsBytesShapesDtypesAndAlignment) {
  nla::test::TempDir dir;
  std::vector<float> a = {1.5f, -2.0f, 3.25f, 4.0f, 5.0f, 6.0f};
  std::vector<uint16_t> b = {0x3f80, 0x4000, 0xc040};  // bf16 1, 2, -3
  std::vector<int64_t> c = {7, -8};
  std::string path = dir.file("t.safetensors");
  nla::io::write_safetensors(path,
                             {{"a", DType::F32, {2, 3}, a.data(), a.size() * 4},
                              {"b.weight", DType::BF16, {3}, b.data(), b.size() * 2},
                              {"c", DType::I64, {2, 1}, c.data(), c.size() * 8},
                              {"empty", DType::F16, {0, 4}, nullptr, 0}},
                             {{"format", "pt"}});
  nla::io::SafetensorsFile file(path);
  EXPECT_EQ(file.header().data_offset % 8, 0u);
  EXPECT_EQ(file.header().metadata.at("format"), "pt");
  ASSERT_EQ(file.tensors().size(), 4u);
  const auto* ta = file.find("a");
  ASSERT_TRUE(ta);
  EXPECT_EQ(ta->dtype, DType::F32);
  EXPECT_EQ(ta->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(std::memcmp(file.data(*ta), a.data(), 24), 0);
  const auto* tb = file.find("b.weight");
  ASSERT_TRUE(tb);
  EXPECT_EQ(tb->dtype, DType::BF16);
  EXPECT_EQ(std::memcmp(file.data(*tb), b.data(), 6), 0);
  EXPECT_EQ(std::memcmp(file.data(*file.find("c")), c.data(), 16), 0);
  EXPECT_EQ(file.find("empty")->num_bytes(), 0u);
  EXPECT_EQ(file.find("missing"), nullptr);
  EXPECT_FALSE(nla::fs::exists(path + ".tmp." + std::to_string(getpid())));
}

TEST(Safetensors, BadFilesAreInputErrorsNamingFileAndTensor) {
  nla::test::TempDir dir;
  const std::string good = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  EXPECT_EQ(open_error(dir, raw_file(good, 8)), "");

  struct Case {
    const char* what;
    std::string bytes;
    std::vector<std::string> expected;  // substrings of the message
  } cases[] = {
      {"shorter than the length field", std::string("\x10\x00\x00", 3), {"bad.safetensors", "shorter"}},
      {"header length past the end", raw_file(good, 8, 1000), {"bad.safetensors", "header length 1000", "past the end"}},
      {"truncated data", raw_file(good, 4), {"bad.safetensors", "'w'", "outside the data area"}},
      {"offsets out of file",
       raw_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", 8),
       {"'w'", "outside the data area"}},
      {"overlapping tensors",
       raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                12),
       {"'a'", "'b'", "overlap"}},
      {"unknown dtype", raw_file(R"({"w":{"dtype":"F8_E9","shape":[2],"data_offsets":[0,2]}})", 2),
       {"'w'", "unknown dtype 'F8_E9'"}},
      {"byte count != dtype x shape", raw_file(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
       {"'w'", "8 bytes", "need 12"}},
      {"begin > end", raw_file(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8), {"'w'", "begin 8 > end 0"}},
      {"negative dimension", raw_file(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8), {"'w'", "shape"}},
      {"not JSON", raw_file("{\"w\": [", 8), {"not valid JSON"}},
      {"not an object", raw_file("[1,2]", 8), {"not a JSON object"}},
      {"missing data_offsets", raw_file(R"({"w":{"dtype":"F32","shape":[2]}})", 8), {"'w'", "data_offsets"}},
      {"element count overflow",
       raw_file(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8),
       {"'w'", "overflow"}},
  };
  for (const auto& c : cases) {
    std::string message = open_error(dir, c.bytes);
    ASSERT_NE(message, "") << c.what << ": opened without error";
    EXPECT_EQ(message.find('\n'), std::string::npos) << c.what << ": message is not one line: " << message;
    for (const auto& part : c.expected)
      EXPECT_NE(message.find(part), std::string::npos) << c.what << ": '" << part << "' not in: " << message;
  }
}

TEST(Safetensors, ShardedCheckpointRoundTrip) {
  nla::test::TempDir dir;
  std::vector<nla::io::PlannedTensor> planned;
  for (int i = 0; i < 5; ++i) planned.push_back({"t" + std::to_string(i), DType::F32, {10, i + 1}});
  auto producer = [](const nla::io::PlannedTensor& tensor, std::vector<uint8_t>& out) {
    for (size_t k = 0; k < out.size(); ++k) out[k] = static_cast<uint8_t>(k * 7 + tensor.name.back());
  };
  // 40..200 bytes per tensor, 256 bytes per shard -> several shards.
  auto names = nla::io::write_checkpoint(dir.path(), planned, producer, 256);
  ASSERT_GT(names.size(), 2u);
  EXPECT_EQ(names.back(), "model.safetensors.index.json");
  EXPECT_NE(names.front().find("-of-"), std::string::npos);
  nla::io::CheckpointReader reader(dir.path());
  EXPECT_EQ(reader.tensor_names().size(), 5u);
  for (const auto& tensor : planned) {
    auto entry = reader.find(tensor.name);
    ASSERT_TRUE(entry.file) << tensor.name;
    std::vector<uint8_t> expected(tensor.num_bytes());
    producer(tensor, expected);
    EXPECT_EQ(std::memcmp(entry.file->data(*entry.info), expected.data(), expected.size()), 0);
  }
  // The index naming a tensor its shard lacks is an error naming the shard and the tensor.
  std::string index = nla::test::read_text(dir.file("model.safetensors.index.json"));
  std::string broken = index;
  broken.replace(broken.find("\"t0\""), 4, "\"zz\"");
  nla::test::write_text(dir.file("model.safetensors.index.json"), broken);
  try {
    nla::io::CheckpointReader bad(dir.path());
    FAIL() << "opened a checkpoint whose index names a missing tensor";
  } catch (const nla::InputError& error) {
    EXPECT_NE(std::string(error.what()).find("'zz'"), std::string::npos) << error.what();
  }
}

TEST(Safetensors, SingleFileWhenUnderThreshold) {
  nla::test::TempDir dir;
  std::vector<nla::io::PlannedTensor> planned = {{"a", DType::F32, {4}}, {"b", DType::BF16, {3}}};
  auto names = nla::io::write_checkpoint(dir.path(), planned,
                                         [](const nla::io::PlannedTensor&, std::vector<uint8_t>& out) {
                                           std::fill(out.begin(), out.end(), 0);
                                         },
                                         1 << 20);
  EXPECT_EQ(names, std::vector<std::string>{"model.safetensors"});
  EXPECT_FALSE(nla::fs::exists(dir.file("model.safetensors.index.json")));
}

// The fuzz target's entry point over a deterministic corpus of mutated headers: CI
// exercises it without libFuzzer. It must return (InputError is caught inside).
TEST(SafetensorsFuzzCorpus, MutatedHeadersNeverCrash) {
  const std::string seeds[] = {
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
      R"("b":{"dtype":"BF16","shape":[4],"data_offsets":[24,32]}})",
      R"({"w":{"dtype":"F16","shape":[],"data_offsets":[0,2]},"e":{"dtype":"I8","shape":[0],"data_offsets":[2,2]}})",
      R"({})",
  };
  const std::string tokens[] = {"-1", "1e309", "18446744073709551615", "18446744073709551616", "[[[[[[[[", "null",
                                "\"F32\"", "\"BF16\"", "{}", "[]", "0.5", "\"__metadata__\"", ",", ":", "\\u0000",
                                "\"data_offsets\"", "\"shape\"", "9223372036854775808"};
  std::mt19937_64 rng(12345);
  size_t runs = 0;
  for (const auto& seed : seeds) {
    for (int i = 0; i < 3000; ++i) {
      std::string header = seed;
      int edits = 1 + static_cast<int>(rng() % 4);
      for (int e = 0; e < edits && !header.empty(); ++e) {
        size_t at = rng() % header.size();
        switch (rng() % 5) {
          case 0: header[at] = static_cast<char>(rng() % 256); break;
          case 1: header.erase(at, 1 + rng() % 8); break;
          case 2: header.insert(at, tokens[rng() % std::size(tokens)]); break;
          case 3: header.insert(at, std::string(1 + rng() % 3, header[rng() % header.size()])); break;
          case 4: header.resize(at); break;
        }
      }
      size_t data_bytes = rng() % 48;
      uint64_t length = (rng() % 8 == 0) ? rng() % 4096 : 0;
      std::string bytes = raw_file(header, data_bytes, length);
      if (rng() % 8 == 0) bytes.resize(rng() % (bytes.size() + 1));
      LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
      ++runs;
    }
  }
  // Deep nesting must not blow the stack.
  std::string deep = "{\"a\":" + std::string(100000, '[') + "}";
  std::string bytes = raw_file(deep, 0);
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  EXPECT_EQ(runs, 9000u);
}

}  // namespace
