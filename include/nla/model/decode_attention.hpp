// Attention of a decode step on the CPU: one query per row over its cached keys and values.
//
// Through ATen (attention_reference in qwen2.cpp), the scores and the weighted values are two
// batched matmuls of (B x KV heads) small matrices, one GEMM call each, plus a handful of
// elementwise passes; at the tiny preset (B = 32, ~600 cached positions, 2 threads) that was
// 3.5 of the 4.3 ms the blocks of a step took, for 5 MFLOP of arithmetic. Here each (row, KV
// head) pair is one task, done whole by one thread: the scores of its query heads against each
// cached key, their softmax, and the values summed in key order, so masked keys (weight
// exactly 0) leave the sums unchanged.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace nla::model {

// q (B, H, 1, D), k/v (B, KV, S, D) with each head's (S, D) rows contiguous (a KV cache or a
// narrow of it), bias (B|1, 1, 1, S) additive float or undefined; all float32 on the CPU, H a
// multiple of KV. -> (B, H, 1, D), softmax(q k^T / sqrt(D) + bias) v as attention_reference.
// Undefined when the inputs are not so or this CPU has no kernel (no AVX2 + FMA, or
// NLA_CPU_KERNELS=0): the caller takes the ATen path. `lanes`: the kernel of that width
// (16: AVX-512, 8: AVX2), 0 for the widest.
at::Tensor decode_attention_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& bias,
                                int64_t lanes = 0);

// The lane widths of the kernels this CPU runs, widest first.
std::vector<int64_t> decode_attention_cpu_lanes();

}  // namespace nla::model
