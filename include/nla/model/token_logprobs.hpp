// log p(target) under a linear LM head, without materialising the (N, V) logits for autograd.
//
// The AV's losses (SFT and GRPO) need only log p of the answer tokens. Through at::linear and
// logsumexp, autograd keeps the (N, V) logits and makes two more passes over them in backward;
// at the tiny demo model (V = 151,936, C = 64) that traffic, not the GEMM, dominated a step.
// Here the vocabulary is walked in chunks whose logits stay in cache (an online softmax), and for
// a frozen head the gradient with respect to the hidden state is formed in the same pass:
//   d log p(t | h) / d h = W[t] - sum_v p(v | h) W[v]      (the target row minus the expected row)
// so backward is one (N, C) product. A head that requires grad takes the plain path.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace nla::model {

// hidden (..., C) after the final norm, head (V, C), targets (...) int64 -> log p(target) (...),
// in float32 (float64 when the inputs are float64). Differentiable in `hidden` (and in `head`
// when it requires grad). `chunk_vocab`: vocabulary entries per chunk (0: about 4 MB of logits).
at::Tensor token_logprobs(const at::Tensor& hidden, const at::Tensor& head, const at::Tensor& targets,
                          int64_t chunk_vocab = 0);

}  // namespace nla::model
