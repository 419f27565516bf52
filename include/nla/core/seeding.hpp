// The one 64-bit mixer behind every seeded draw (row orders, splits, sample seeds,
// distractors, positions): splitmix64. Deriving seeds from (seed, step, sample id, ...)
// with it is what makes results independent of batches, ranks and resumes.
#pragma once

#include <cstdint>

namespace nla {

// The splitmix64 output for state x (the state advanced by the golden-ratio increment
// first): a stateless hash of x.
constexpr uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// The generator form: the next value of the stream held in `state`, which advances.
inline uint64_t splitmix64_next(uint64_t& state) {
  const uint64_t value = splitmix64(state);
  state += 0x9E3779B97F4A7C15ull;
  return value;
}

// Two values -> one seed (order matters).
constexpr uint64_t mix_seeds(uint64_t a, uint64_t b) { return splitmix64(a ^ splitmix64(b)); }

}  // namespace nla
