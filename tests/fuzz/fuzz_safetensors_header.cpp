// libFuzzer target for the safetensors header parser: any input must either parse into
// a header whose every tensor lies inside the file, or raise nla::InputError. Anything
// else (a crash, another exception, an out-of-bounds tensor) is a bug.
// Built by NLA_FUZZ with clang (-fsanitize=fuzzer,address,undefined); the gtest
// tests/io/test_fuzz_corpus.cpp runs the same entry point over mutated headers in CI.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "nla/core/error.hpp"
#include "nla/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto header = nla::io::parse_safetensors_header(data, size, size, "<fuzz>");
    const uint64_t data_size = size - header.data_offset;
    for (const auto& tensor : header.tensors) {
      if (tensor.begin > tensor.end || tensor.end > data_size) std::abort();
      // Touch the first and last byte, so ASan sees an out-of-bounds tensor.
      if (tensor.end > tensor.begin) {
        volatile uint8_t first = data[header.data_offset + tensor.begin];
        volatile uint8_t last = data[header.data_offset + tensor.end - 1];
        (void)first;
        (void)last;
      }
    }
  } catch (const nla::InputError&) {
  }
  return 0;
}
