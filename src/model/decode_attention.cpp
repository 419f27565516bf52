// Attention of a decode step on the CPU (see decode_attention.hpp).
#include "nla/model/decode_attention.hpp"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "cpu_vector.hpp"
#include "nla/core/error.hpp"

namespace nla::model {

namespace {

using cpu::Lanes;  // lanes along the head dimension

// The sum of a vector's lanes as a tree of halves, in registers (through memory, a wide store
// read back as scalars stalls store forwarding).
[[gnu::always_inline]] inline float lane_sum(Lanes<8>::Float x) {
  typedef float Four __attribute__((vector_size(4 * sizeof(float))));
  Four half = __builtin_shufflevector(x, x, 0, 1, 2, 3) + __builtin_shufflevector(x, x, 4, 5, 6, 7);
  half += __builtin_shufflevector(half, half, 2, 3, 0, 1);
  half += __builtin_shufflevector(half, half, 1, 0, 3, 2);
  return half[0];
}
[[gnu::always_inline]] inline float lane_sum(Lanes<16>::Float x) {
  return lane_sum(Lanes<8>::Float(__builtin_shufflevector(x, x, 0, 1, 2, 3, 4, 5, 6, 7) +
                                  __builtin_shufflevector(x, x, 8, 9, 10, 11, 12, 13, 14, 15)));
}

// a . b over n floats: kLanes at a time, the rest one by one.
template <int kLanes>
[[gnu::always_inline]] inline float dot(const float* a, const float* b, int64_t n) {
  using Float = typename Lanes<kLanes>::Float;
  Float acc = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    Float x, y;
    std::memcpy(&x, a + i, sizeof x);
    std::memcpy(&y, b + i, sizeof y);
    acc += x * y;
  }
  float sum = lane_sum(acc);
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// out[0, n) = sum_j weights[j] * x[j * n + (0, n)] over j in [0, count), in key order; kLanes of
// the n columns at a time in a register, so the sums do not go through memory.
template <int kLanes>
[[gnu::always_inline]] inline void weighted_sum(float* out, const float* weights, const float* x, int64_t count,
                                                int64_t n) {
  using Float = typename Lanes<kLanes>::Float;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    Float sum = {};
    for (int64_t j = 0; j < count; ++j) {
      Float y;
      std::memcpy(&y, x + j * n + i, sizeof y);
      sum += y * weights[j];
    }
    std::memcpy(out + i, &sum, sizeof sum);
  }
  for (; i < n; ++i) {
    float sum = 0;
    for (int64_t j = 0; j < count; ++j) sum += x[j * n + i] * weights[j];
    out[i] = sum;
  }
}

// exp(x) for x <= 0 (a softmax's scores less their maximum), kLanes at a time, within ~2 ulp:
// x = n ln2 + r with |r| <= ln2 / 2 (ln2 in two parts, Cody and Waite, so n * hi is exact), exp(r)
// by Cephes' expf polynomial, 2^n built in the exponent bits. Below -87 (2^-126, float's
// smallest normal) the result is exactly 0: a masked key, whose bias is float's lowest, weighs 0.
// In place (a vector passed or returned by value changes the ABI between instruction sets).
template <int kLanes>
[[gnu::always_inline]] inline void exp_nonpositive(typename Lanes<kLanes>::Float& x) {
  using Float = typename Lanes<kLanes>::Float;
  using Int = typename Lanes<kLanes>::Int;
  const Int underflow = x < -87.0f;
  x = underflow ? Float{} - 87.0f : x;
  const Float round_shift = Float{} + 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  Float n = x * 1.44269504088896341f + round_shift;
  n -= round_shift;
  Float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  Float p = Float{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const Int bits = (__builtin_convertvector(n, Int) + 127) << 23;
  Float two_to_n;
  std::memcpy(&two_to_n, &bits, sizeof two_to_n);
  x = underflow ? Float{} : p * two_to_n;
}

// The shapes and pointers of one call; pair p = (row b, KV head kv) = b * kv_heads + kv.
struct Problem {
  int64_t kv_heads, group, keys, head_dim;  // group: query heads per KV head
  const float* q;                           // (B, H, D) contiguous
  const float* k;                           // pair p's key j at k + b * k_batch + kv * k_head + j * D
  const float* v;
  int64_t k_batch, k_head, v_batch, v_head;
  const float* bias;  // row b's at bias + b * bias_batch, or nullptr
  int64_t bias_batch;
  float scale;
  float* out;  // (B, H, D)
};

// Pairs [first, last), each whole: for each of its query heads the scores against every key,
// their softmax, and the values weighted by it (summed in key order, divided by the
// softmax's sum at the end). One pass per pair: a thread never waits on another mid-block.
template <int kLanes>
[[gnu::always_inline]] inline void attend_pairs(const Problem& P, int64_t first, int64_t last) {
  using Float = typename Lanes<kLanes>::Float;
  const int64_t padded = (P.keys + kLanes - 1) / kLanes * kLanes;
  std::vector<float> weights(static_cast<size_t>(padded));  // of one query head
  for (int64_t p = first; p < last; ++p) {
    const int64_t b = p / P.kv_heads, kv = p % P.kv_heads;
    const float* keys = P.k + b * P.k_batch + kv * P.k_head;
    const float* values = P.v + b * P.v_batch + kv * P.v_head;
    const float* bias = P.bias ? P.bias + b * P.bias_batch : nullptr;
    for (int64_t g = 0; g < P.group; ++g) {
      const int64_t row = b * P.kv_heads * P.group + kv * P.group + g;
      const float* query = P.q + row * P.head_dim;
      float maximum = std::numeric_limits<float>::lowest();
      for (int64_t j = 0; j < P.keys; ++j) {
        float score = dot<kLanes>(query, keys + j * P.head_dim, P.head_dim) * P.scale;
        if (bias) score += bias[j];
        weights[static_cast<size_t>(j)] = score;
        maximum = score > maximum ? score : maximum;
      }
      // The padding past the keys holds float's lowest, so it weighs 0.
      std::fill(weights.begin() + P.keys, weights.end(), std::numeric_limits<float>::lowest());
      Float total = {};
      for (int64_t j = 0; j < padded; j += kLanes) {
        Float w;
        std::memcpy(&w, &weights[static_cast<size_t>(j)], sizeof w);
        w -= maximum;
        exp_nonpositive<kLanes>(w);
        std::memcpy(&weights[static_cast<size_t>(j)], &w, sizeof w);
        total += w;
      }
      float* out = P.out + row * P.head_dim;
      weighted_sum<kLanes>(out, weights.data(), values, P.keys, P.head_dim);
      const float inverse = 1.0f / lane_sum(total);
      for (int64_t i = 0; i < P.head_dim; ++i) out[i] *= inverse;
    }
  }
}

using PairPass = void (*)(const Problem&, int64_t, int64_t);

#if defined(__x86_64__)
[[gnu::target("avx512f")]] void attend_avx512(const Problem& P, int64_t first, int64_t last) {
  attend_pairs<16>(P, first, last);
}
[[gnu::target("avx2,fma")]] void attend_avx2(const Problem& P, int64_t first, int64_t last) {
  attend_pairs<8>(P, first, last);
}
constexpr PairPass kAttendAvx512 = attend_avx512, kAttendAvx2 = attend_avx2;
#else
constexpr PairPass kAttendAvx512 = nullptr, kAttendAvx2 = nullptr;
#endif

using Kernel = cpu::Variant<PairPass>;

const std::vector<Kernel>& kernels() {
  static const std::vector<Kernel> runnable = cpu::runnable_variants(kAttendAvx512, kAttendAvx2);
  return runnable;
}

bool contiguous_rows(const at::Tensor& x) { return x.stride(3) == 1 && x.stride(2) == x.size(3); }

}  // namespace

std::vector<int64_t> decode_attention_cpu_lanes() { return cpu::lane_widths(kernels()); }

at::Tensor decode_attention_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& bias,
                                int64_t lanes) {
  const Kernel* chosen = cpu::variant_with(kernels(), lanes);
  if (!chosen || q.dim() != 4 || k.dim() != 4 || v.dim() != 4 || q.size(2) != 1) return {};
  for (const at::Tensor* x : {&q, &k, &v})
    if (!x->is_cpu() || x->scalar_type() != at::kFloat) return {};
  const int64_t b = q.size(0), heads = q.size(1), d = q.size(3), kv_heads = k.size(1), s = k.size(2);
  if (k.size(0) != b || v.sizes() != k.sizes() || k.size(3) != d || heads % kv_heads != 0 || !contiguous_rows(k) ||
      !contiguous_rows(v))
    return {};
  if (bias.defined() && (!bias.is_cpu() || bias.scalar_type() != at::kFloat || bias.dim() != 4 ||
                         (bias.size(0) != b && bias.size(0) != 1) || bias.size(2) != 1 || bias.size(3) != s ||
                         bias.stride(3) != 1))
    return {};

  at::Tensor query = q.contiguous();
  at::Tensor out = at::empty({b, heads, 1, d}, q.options());
  const Problem problem{kv_heads,
                        heads / kv_heads,
                        s,
                        d,
                        query.data_ptr<float>(),
                        k.data_ptr<float>(),
                        v.data_ptr<float>(),
                        k.stride(0),
                        k.stride(1),
                        v.stride(0),
                        v.stride(1),
                        bias.defined() ? bias.data_ptr<float>() : nullptr,
                        bias.defined() && bias.size(0) == b ? bias.stride(0) : 0,
                        static_cast<float>(1.0 / std::sqrt(static_cast<double>(d))),  // as mul_(1 / sqrt(d)) on floats
                        out.data_ptr<float>()};
  at::parallel_for(0, b * kv_heads, 1, [&](int64_t first, int64_t last) { chosen->run(problem, first, last); });
  return out;
}

}  // namespace nla::model
