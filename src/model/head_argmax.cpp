// Greedy token ids on the CPU (see head_argmax.hpp). Built with -ffp-contract=fast (CMakeLists)
// so each `acc += h * w` is one fused multiply-add, as in a GEMM's micro-kernel.
#include "nla/model/head_argmax.hpp"

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

void refuse_non_finite(const std::vector<float>& maximum) {
  for (size_t i = 0; i < maximum.size(); ++i)
    NLA_CHECK(std::isfinite(maximum[i]), "greedy decoding: row ", i, "'s largest logit is ", maximum[i],
              " (NaN or infinite hidden states)");
}

using cpu::Lanes;  // one lane per batch row

// The running maximum and its index of every batch row (lane), over the head rows
// [v_first, v_last): kRows head rows at a time times kGroups groups of kLanes batch rows, all
// accumulators in registers. hidden_t is the hidden states transposed, (C, padded) with the
// batch rows from `group` on at hidden_t[k * padded + group * kLanes]. Rows are visited in
// order and a lane moves only on a strictly larger logit: the first index of a tie wins.
template <int kLanes, int kRows, int kGroups>
[[gnu::always_inline]] inline void scan_rows(const float* head, int64_t c, const float* hidden_t, int64_t padded,
                                             int64_t group, int64_t v_first, int64_t v_last, float* best,
                                             int32_t* best_index) {
  using Float = typename Lanes<kLanes>::Float;
  using Int = typename Lanes<kLanes>::Int;
  Float maximum[kGroups];
  Int index[kGroups];
  std::memcpy(maximum, best + group * kLanes, sizeof maximum);
  std::memcpy(index, best_index + group * kLanes, sizeof index);
  auto keep_larger = [&](const Float& logits, int g, int64_t v) {
    const Int larger = logits > maximum[g];
    maximum[g] = larger ? logits : maximum[g];
    index[g] = larger ? Int{} + static_cast<int32_t>(v) : index[g];
  };
  int64_t v = v_first;
  for (; v + kRows <= v_last; v += kRows) {
    Float acc[kRows][kGroups] = {};
    const float* w = head + v * c;
    for (int64_t k = 0; k < c; ++k) {
      Float h[kGroups];
      std::memcpy(h, hidden_t + k * padded + group * kLanes, sizeof h);
#pragma GCC unroll 8
      for (int r = 0; r < kRows; ++r)
#pragma GCC unroll 2
        for (int g = 0; g < kGroups; ++g) acc[r][g] += h[g] * w[r * c + k];
    }
    for (int r = 0; r < kRows; ++r)
      for (int g = 0; g < kGroups; ++g) keep_larger(acc[r][g], g, v + r);
  }
  for (; v < v_last; ++v) {  // the last rows of the range, one at a time
    Float acc[kGroups] = {};
    const float* w = head + v * c;
    for (int64_t k = 0; k < c; ++k) {
      Float h[kGroups];
      std::memcpy(h, hidden_t + k * padded + group * kLanes, sizeof h);
      for (int g = 0; g < kGroups; ++g) acc[g] += h[g] * w[k];
    }
    for (int g = 0; g < kGroups; ++g) keep_larger(acc[g], g, v);
  }
  std::memcpy(best + group * kLanes, maximum, sizeof maximum);
  std::memcpy(best_index + group * kLanes, index, sizeof index);
}

// Head rows [v_first, v_last) against every batch row, in blocks of head rows small enough to
// stay in the L2 cache while each pair of lane groups passes over them (the head is read from
// memory once however large the batch).
template <int kLanes, int kRows>
[[gnu::always_inline]] inline void scan_range(const float* head, int64_t c, const float* hidden_t, int64_t padded,
                                              int64_t v_first, int64_t v_last, float* best, int32_t* best_index) {
  const int64_t groups = padded / kLanes;
  const int64_t block = std::max<int64_t>(kRows, (int64_t{64} * 1024 / (c * 4)) / kRows * kRows);
  for (int64_t first = v_first; first < v_last; first += block) {
    const int64_t last = std::min(v_last, first + block);
    int64_t group = 0;
    for (; group + 2 <= groups; group += 2)
      scan_rows<kLanes, kRows, 2>(head, c, hidden_t, padded, group, first, last, best, best_index);
    if (group < groups) scan_rows<kLanes, kRows, 1>(head, c, hidden_t, padded, group, first, last, best, best_index);
  }
}

using ScanRange = void (*)(const float*, int64_t, const float*, int64_t, int64_t, int64_t, float*, int32_t*);

#if defined(__x86_64__)
// 16 lanes x 6 head rows x 2 groups = 12 zmm accumulators; 8 lanes x 4 x 2 = 8 ymm (of 16).
[[gnu::target("avx512f")]] void scan_range_avx512(const float* head, int64_t c, const float* hidden_t, int64_t padded,
                                                   int64_t v_first, int64_t v_last, float* best, int32_t* best_index) {
  scan_range<16, 6>(head, c, hidden_t, padded, v_first, v_last, best, best_index);
}
[[gnu::target("avx2,fma")]] void scan_range_avx2(const float* head, int64_t c, const float* hidden_t, int64_t padded,
                                                 int64_t v_first, int64_t v_last, float* best, int32_t* best_index) {
  scan_range<8, 4>(head, c, hidden_t, padded, v_first, v_last, best, best_index);
}
constexpr ScanRange kScanAvx512 = scan_range_avx512, kScanAvx2 = scan_range_avx2;
#else
constexpr ScanRange kScanAvx512 = nullptr, kScanAvx2 = nullptr;
#endif

using Kernel = cpu::Variant<ScanRange>;

const std::vector<Kernel>& kernels() {
  static const std::vector<Kernel> runnable = cpu::runnable_variants(kScanAvx512, kScanAvx2);
  return runnable;
}

}  // namespace

at::Tensor argmax_rows_cpu(const at::Tensor& logits) {
  at::Tensor rows = logits.contiguous();
  const int64_t b = rows.size(0), v = rows.size(1);
  const float* data = rows.data_ptr<float>();
  std::vector<int64_t> index(static_cast<size_t>(b), 0);
  std::vector<float> maximum(static_cast<size_t>(b), 0.0f);
  // kLanes independent running maxima the compiler keeps in vector registers, then one pass
  // to the first element equal to the maximum (B = 32, V = 151,936: 1.3 ms on one thread
  // against at::argmax's 3.2 on two).
  at::parallel_for(0, b, (b + 1) / 2, [&](int64_t first, int64_t last) {
    for (int64_t i = first; i < last; ++i) {
      const float* row = data + i * v;
      constexpr int64_t kLanes = 16;
      float lanes[kLanes];
      for (float& lane : lanes) lane = -std::numeric_limits<float>::infinity();
      int64_t j = 0;
      for (; j + kLanes <= v; j += kLanes)
        for (int64_t lane = 0; lane < kLanes; ++lane) lanes[lane] = row[j + lane] > lanes[lane] ? row[j + lane] : lanes[lane];
      float best = -std::numeric_limits<float>::infinity();
      for (; j < v; ++j) best = row[j] > best ? row[j] : best;
      for (float lane : lanes) best = lane > best ? lane : best;
      int64_t at = 0;
      while (at < v && row[at] != best) ++at;
      index[static_cast<size_t>(i)] = std::min(at, v - 1);
      maximum[static_cast<size_t>(i)] = best;
    }
  });
  refuse_non_finite(maximum);
  return at::tensor(index, at::kLong);
}

std::vector<int64_t> head_argmax_cpu_lanes() {
  return cpu::lane_widths(kernels());
}

bool head_argmax_cpu_available(int64_t batch) {
  // Fewer rows than half the lanes: the GEMV + scan does less work.
  const Kernel* widest = cpu::variant_with(kernels(), 0);
  return widest != nullptr && 2 * batch >= widest->lanes;
}

at::Tensor head_argmax_cpu(const at::Tensor& hidden, const at::Tensor& head, int64_t lanes) {
  NLA_CHECK(hidden.dim() == 2 && head.dim() == 2 && hidden.size(1) == head.size(1),
            "head_argmax_cpu: hidden (B, C) and head (V, C)");
  const int64_t b = hidden.size(0), c = hidden.size(1), vocab = head.size(0);
  const Kernel* chosen = cpu::variant_with(kernels(), lanes);
  if (chosen == nullptr || (lanes == 0 && !head_argmax_cpu_available(b)) || !hidden.is_cpu() || !head.is_cpu() ||
      hidden.scalar_type() != at::kFloat || head.scalar_type() != at::kFloat || !head.is_contiguous() ||
      vocab >= std::numeric_limits<int32_t>::max())
    return {};
  const int64_t padded = (b + chosen->lanes - 1) / chosen->lanes * chosen->lanes;
  at::Tensor hidden_t = at::zeros({c, padded}, hidden.options());
  hidden_t.narrow(1, 0, b).copy_(hidden.t());
  const float* hidden_data = hidden_t.data_ptr<float>();
  const float* head_data = head.data_ptr<float>();

  // Each thread scans a contiguous part of the vocabulary; the parts are merged in order, a
  // later part winning only with a strictly larger logit.
  struct Part {
    std::vector<float> best;
    std::vector<int32_t> index;
  };
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  std::vector<Part> parts(static_cast<size_t>(threads));
  const int64_t share = (vocab + threads - 1) / threads;
  at::parallel_for(0, threads, 1, [&](int64_t first_part, int64_t last_part) {
    for (int64_t p = first_part; p < last_part; ++p) {
      Part& part = parts[static_cast<size_t>(p)];
      part.best.assign(static_cast<size_t>(padded), -std::numeric_limits<float>::infinity());
      part.index.assign(static_cast<size_t>(padded), 0);
      const int64_t first = p * share, last = std::min(vocab, first + share);
      if (first < last) chosen->run(head_data, c, hidden_data, padded, first, last, part.best.data(), part.index.data());
    }
  });
  std::vector<float> maximum(static_cast<size_t>(b), -std::numeric_limits<float>::infinity());
  std::vector<int64_t> index(static_cast<size_t>(b), 0);
  for (const Part& part : parts)
    for (size_t i = 0; i < static_cast<size_t>(b); ++i)
      if (part.best[i] > maximum[i]) {
        maximum[i] = part.best[i];
        index[i] = part.index[i];
      }
  refuse_non_finite(maximum);
  return at::tensor(index, at::kLong);
}

}  // namespace nla::model
