// What the hand-written CPU kernels of the decode step share (head_argmax.cpp,
// decode_attention.cpp): GCC/Clang vector types of a given number of float lanes, and which
// instruction sets this CPU runs. A kernel is written once over Lanes<N>, always inlined into
// a wrapper per instruction set ([[gnu::target(...)]]), and the wrapper is chosen at run time,
// so one binary serves any x86-64 machine of a cluster; elsewhere the ATen path serves.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string>

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

}  // namespace nla::model::cpu
