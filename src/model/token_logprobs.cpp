// Chunked log p(target) under a linear head with the expected-row gradient (see the header).
#include "nla/model/token_logprobs.hpp"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <limits>

#include "nla/core/error.hpp"

namespace nla::model {

namespace {

// Float32 at least: bf16 logits are not summed over 152k entries.
c10::ScalarType accumulation_dtype(const at::Tensor& head) {
  return head.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

int64_t vocab_per_chunk(int64_t rows, int64_t requested) {
  if (requested > 0) return requested;
  constexpr int64_t kChunkBytes = 4 << 20;  // logits of a chunk stay in L3 between the two GEMMs
  return std::max<int64_t>(256, kChunkBytes / (std::max<int64_t>(rows, 1) * 4));
}

struct LogprobsAndGradient {
  at::Tensor logprobs;  // (N)
  at::Tensor gradient;  // (N, C): d logprob / d hidden; undefined when not asked for
};

// hidden (N, C), head (V, C), targets (N). One pass over the vocabulary in chunks with a
// running max (online softmax): the head is read once per chunk for both GEMMs while it is
// hot, and no (N, V) tensor exists.
LogprobsAndGradient chunked_logprobs(const at::Tensor& hidden, const at::Tensor& head, const at::Tensor& targets,
                                     int64_t chunk_vocab, bool with_gradient) {
  const int64_t n = hidden.size(0), vocab = head.size(0);
  const auto dtype = accumulation_dtype(head);
  const auto options = hidden.options().dtype(dtype);
  at::Tensor running_max = at::full({n, 1}, -std::numeric_limits<double>::infinity(), options);  // (N, 1)
  at::Tensor running_sum = at::zeros({n, 1}, options);                                           // (N, 1)
  at::Tensor expected_row = with_gradient ? at::zeros({n, hidden.size(1)}, options) : at::Tensor();  // (N, C)
  const int64_t step = vocab_per_chunk(n, chunk_vocab);
  for (int64_t begin = 0; begin < vocab; begin += step) {
    at::Tensor w = head.narrow(0, begin, std::min(step, vocab - begin));  // (Vc, C)
    at::Tensor logits = at::linear(hidden, w).to(dtype);                  // (N, Vc)
    at::Tensor new_max = at::maximum(running_max, std::get<0>(logits.max(1, /*keepdim=*/true)));
    at::Tensor rescale = (running_max - new_max).exp_();  // exp(-inf) = 0 on the first chunk
    at::Tensor weights = logits.sub_(new_max).exp_();     // (N, Vc), in place
    running_sum.mul_(rescale).add_(weights.sum(1, /*keepdim=*/true));
    if (with_gradient) expected_row.mul_(rescale).add_(at::matmul(weights.to(head.scalar_type()), w).to(dtype));
    running_max = new_max;
  }
  LogprobsAndGradient out;
  at::Tensor target_rows = head.index_select(0, targets).to(dtype);  // (N, C)
  at::Tensor picked = (hidden.to(dtype) * target_rows).sum(1);       // (N)
  out.logprobs = picked - (running_max + running_sum.log()).squeeze(1);
  if (with_gradient) out.gradient = target_rows - expected_row.div_(running_sum);
  return out;
}

// Frozen head: the gradient with respect to `hidden` is formed in forward, backward scales it.
struct FrozenHeadLogprobs : public torch::autograd::Function<FrozenHeadLogprobs> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& hidden, const at::Tensor& head,
                            const at::Tensor& targets, int64_t chunk_vocab) {
    auto result = chunked_logprobs(hidden, head, targets, chunk_vocab, /*with_gradient=*/true);
    ctx->save_for_backward({result.gradient});
    ctx->saved_data["hidden_dtype"] = static_cast<int64_t>(hidden.scalar_type());
    return result.logprobs;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const at::Tensor gradient = ctx->get_saved_variables()[0];  // (N, C)
    const auto hidden_dtype = static_cast<c10::ScalarType>(ctx->saved_data["hidden_dtype"].toInt());
    at::Tensor grad_hidden = (gradient * grad_outputs[0].to(gradient.scalar_type()).unsqueeze(1)).to(hidden_dtype);
    return {grad_hidden, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor token_logprobs(const at::Tensor& hidden, const at::Tensor& head, const at::Tensor& targets,
                          int64_t chunk_vocab) {
  NLA_CHECK(head.dim() == 2 && hidden.size(-1) == head.size(1), "token_logprobs: hidden (..., C) and head (V, C)");
  NLA_CHECK(targets.sizes() == hidden.sizes().slice(0, hidden.dim() - 1),
            "token_logprobs: targets must have hidden's shape without C");
  const auto shape = targets.sizes().vec();
  at::Tensor flat_hidden = hidden.reshape({-1, hidden.size(-1)});  // (N, C)
  at::Tensor flat_targets = targets.reshape({-1}).to(at::kLong);   // (N)
  if (head.requires_grad() && at::GradMode::is_enabled()) {
    // A trained head needs the softmax again in backward: keep autograd's plain path.
    at::Tensor logits = at::linear(flat_hidden, head).to(accumulation_dtype(head));  // (N, V)
    at::Tensor picked = logits.gather(1, flat_targets.unsqueeze(1)).squeeze(1);
    return (picked - at::logsumexp(logits, {1})).view(shape);
  }
  if (flat_hidden.requires_grad() && at::GradMode::is_enabled())
    return FrozenHeadLogprobs::apply(flat_hidden, head.detach(), flat_targets, chunk_vocab).view(shape);
  return chunked_logprobs(flat_hidden, head, flat_targets, chunk_vocab, /*with_gradient=*/false).logprobs.view(shape);
}

}  // namespace nla::model
