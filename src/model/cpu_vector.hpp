// What the hand-written CPU kernels of the decode step share (head_argmax.cpp,
// decode_attention.cpp): GCC/Clang vector types of a given number of float lanes, and which
// instruction sets this CPU runs. A kernel is written once over Lanes<N>, always inlined into
// a wrapper per instruction set ([[gnu::target(...)]]), and the wrapper is chosen at run time,
// so one binary serves any x86-64 machine of a cluster; elsewhere the ATen path serves.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

namespace nla::model::cpu {

template <int kLanes>
struct Lanes {
  typedef float Float __attribute__((vector_size(kLanes * sizeof(float))));
  typedef int32_t Int __attribute__((vector_size(kLanes * sizeof(int32_t))));
};

// NLA_CPU_KERNELS=0 turns the hand-written kernels off (the ATen path then serves), to
// compare the two.
inline bool kernels_enabled() {
  const char* setting = std::getenv("NLA_CPU_KERNELS");
  return !(setting && std::string(setting) == "0");
}

#if defined(__x86_64__)
inline bool has_avx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f");
}
inline bool has_avx2_fma() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#else
inline bool has_avx512() { return false; }
inline bool has_avx2_fma() { return false; }
#endif

// One instruction set's build of a kernel, Fn a function pointer, and its vector width.
template <typename Fn>
struct Variant {
  Fn run = nullptr;
  int64_t lanes = 0;
};

// The variants this CPU runs, widest first (nullptr: not built for this architecture); none
// with NLA_CPU_KERNELS=0.
template <typename Fn>
std::vector<Variant<Fn>> runnable_variants(Fn avx512, Fn avx2) {
  std::vector<Variant<Fn>> found;
  if (!kernels_enabled()) return found;
  if (avx512 && has_avx512()) found.push_back({avx512, 16});
  if (avx2 && has_avx2_fma()) found.push_back({avx2, 8});
  return found;
}

// The variant of `lanes` lanes (0: the widest), or nullptr.
template <typename Fn>
const Variant<Fn>* variant_with(const std::vector<Variant<Fn>>& variants, int64_t lanes) {
  for (const Variant<Fn>& variant : variants)
    if (lanes == 0 || variant.lanes == lanes) return &variant;
  return nullptr;
}

template <typename Fn>
std::vector<int64_t> lane_widths(const std::vector<Variant<Fn>>& variants) {
  std::vector<int64_t> widths;
  for (const Variant<Fn>& variant : variants) widths.push_back(variant.lanes);
  return widths;
}

}  // namespace nla::model::cpu
