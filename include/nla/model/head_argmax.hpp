// Greedy token ids on the CPU: the argmax of each row's logits, with or without forming them.
//
// A greedy decode step needs only the index of each row's largest logit. Through at::linear
// and a scan, the CPU writes and re-reads the (B, V) logits (19 MB at B = 32, V = 151,936), and
// OpenBLAS repacks the whole (V, C) head on every call; at the tiny preset that was two thirds
// of the step. head_argmax_cpu walks the head once instead: each vocabulary row is multiplied
// with all B hidden states at once (the rows of the batch in the vector lanes, the head read in
// place), and each lane keeps its running maximum.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace nla::model {

// The first index of each row's maximum of logits (B, V) float32 on the CPU, as at::argmax.
// A row whose maximum is not finite (an overflow, or NaN hidden states) is refused (Error).
at::Tensor argmax_rows_cpu(const at::Tensor& logits);

// argmax_v (hidden[b] . head[v]) for hidden (B, C) and head (V, C), both float32 on the CPU:
// (B) int64, the first index among equal maxima, sums over C in order (fused multiply-adds,
// as a GEMM's micro-kernel). Undefined when this CPU has no kernel for it (no AVX2 + FMA),
// the batch is too small to fill half the vector lanes, or the inputs are not as above; the
// caller then takes the logits path. `lanes`: the kernel of that width (16: AVX-512, 8: AVX2;
// any batch size), 0 for the widest. A row whose maximum is not finite is refused as by
// argmax_rows_cpu.
at::Tensor head_argmax_cpu(const at::Tensor& hidden, const at::Tensor& head, int64_t lanes = 0);

// The lane widths of the kernels this CPU runs, widest first (none with NLA_CPU_KERNELS=0).
std::vector<int64_t> head_argmax_cpu_lanes();

// Whether head_argmax_cpu (widest kernel) takes a batch of `batch` rows.
bool head_argmax_cpu_available(int64_t batch);

}  // namespace nla::model
