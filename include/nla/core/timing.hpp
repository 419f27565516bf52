// Wall-clock seconds for timings and rates (steady clock: never goes backwards).
#pragma once

#include <chrono>

namespace nla {

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace nla
