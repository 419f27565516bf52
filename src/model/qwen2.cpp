// The Qwen2 forward: embeddings (+ injection), blocks with RoPE/GQA attention and SwiGLU,
// final norm and LM head, optional KV cache. Follows transformers' modeling_qwen2.py.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/version.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>
#include <vector>

#include "nla/core/error.hpp"
#include "nla/model/decode_attention.hpp"
#include "nla/model/head_argmax.hpp"
#include "nla/model/qwen2.hpp"
#include "nla/model/token_logprobs.hpp"

namespace nla::model {

namespace {

// HF Qwen2RMSNorm: statistics in fp32, scaled in the input dtype.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor normed = xf * at::rsqrt(xf.pow(2).mean(-1, true) + eps);
  return weight * normed.to(x.scalar_type());
}

// HF rotate_half: (x1, x2) -> (-x2, x1) over the two halves of the head dimension.
at::Tensor rotate_half(const at::Tensor& x) {
  int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

// cos and sin of the rotary angles, (B, 1, T, D) in `dtype`. Angles in float64 so long
// positions keep their precision before the cast.
std::pair<at::Tensor, at::Tensor> rotary(const at::Tensor& position_ids, int64_t head_dim, double theta,
                                         c10::ScalarType dtype) {
  auto options = at::TensorOptions().dtype(at::kDouble).device(position_ids.device());
  at::Tensor exponent = at::arange(0, head_dim, 2, options) / static_cast<double>(head_dim);  // (D/2)
  at::Tensor inv_freq = at::pow(theta, exponent).reciprocal();                             // (D/2)
  at::Tensor angles = position_ids.to(at::kDouble).unsqueeze(-1) * inv_freq;                // (B, T, D/2)
  at::Tensor emb = at::cat({angles, angles}, -1).unsqueeze(1);                              // (B, 1, T, D)
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

// Hand-written grouped-query attention: the query heads that share a KV head are folded
// into the row dimension, so keys and values are never repeated.
// q (B, H, T, D), k/v (B, KV, S, D), bias (B|1, 1, T, S) float or undefined -> (B, H, T, D)
at::Tensor attention_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& bias) {
  const int64_t b = q.size(0), h = q.size(1), t = q.size(2), d = q.size(3);
  const int64_t kv = k.size(1), s = k.size(2), g = h / kv;
  at::Tensor qg = q.reshape({b, kv, g * t, d});                                     // (B, KV, G*T, D)
  at::Tensor scores = at::matmul(qg, k.transpose(-1, -2)).to(at::kFloat);           // (B, KV, G*T, S)
  scores = scores.mul_(1.0 / std::sqrt(static_cast<double>(d))).view({b, kv, g, t, s});
  if (bias.defined()) scores = scores + bias.unsqueeze(1);                          // (B, KV, G, T, S)
  at::Tensor probs = at::softmax(scores, -1).to(v.scalar_type()).view({b, kv, g * t, s});
  return at::matmul(probs, v).view({b, h, t, d});
}

}  // namespace

at::Tensor attention_bias_as(const at::Tensor& bias, c10::ScalarType dtype) {
  // float's lowest rounds to -inf in bf16 and fp16, and a fully masked row (a padding query)
  // of -inf makes the fused kernel's softmax NaN: clamp to half the target type's lowest,
  // which leaves room for the scores added to it.
  double floor = std::numeric_limits<float>::lowest() / 2;
  if (dtype == at::kHalf) floor = -32752.0;      // fp16 lowest -65504
  if (dtype == at::kBFloat16) floor = -1.69e38;  // bf16 lowest -3.39e38
  return bias.clamp_min(floor).to(dtype);
}

namespace {

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& bias,
                     bool causal_only, bool fused) {
  if (q.size(2) == 1 && q.is_cpu()) {  // a decode step on the CPU: the hand-written kernel where it runs
    at::Tensor out = decode_attention_cpu(q, k, v, bias);
    if (out.defined()) return out;
  }
#if TORCH_VERSION_MAJOR >= 2
  // One query per row (a decode step) stays on the folded path: it reads each cached key
  // once, where the fused kernel with a mask needs the KV heads repeated, a copy of the
  // whole cache per layer per step.
  if (fused && q.size(2) > 1) {
    const int64_t b = k.size(0), kv = k.size(1), s = k.size(2), d = k.size(3), h = q.size(1);
#if TORCH_VERSION_MAJOR > 2 || TORCH_VERSION_MINOR >= 5
    // Flash and cuDNN read grouped KV heads themselves, without a mask and in 16-bit types;
    // with a mask or in fp32, enable_gqa would send the call to the math kernel.
    if (causal_only && q.scalar_type() != at::kFloat && kv != h)
      return at::scaled_dot_product_attention(q, k, v, c10::nullopt, 0.0, true, c10::nullopt, /*enable_gqa=*/true);
#endif
    at::Tensor kr = k.unsqueeze(2).expand({b, kv, h / kv, s, d}).reshape({b, h, s, d});
    at::Tensor vr = v.unsqueeze(2).expand({b, kv, h / kv, s, d}).reshape({b, h, s, d});
    if (causal_only) return at::scaled_dot_product_attention(q, kr, vr, c10::nullopt, 0.0, true);
    c10::optional<at::Tensor> mask;
    if (bias.defined()) mask = attention_bias_as(bias, q.scalar_type());
    return at::scaled_dot_product_attention(q, kr, vr, mask, 0.0, false);
  }
#else
  (void)causal_only;
  (void)fused;
#endif
  return attention_reference(q, k, v, bias);
}

}  // namespace

at::Tensor apply_steering(const at::Tensor& x, const std::vector<Steering>& steering, int64_t layer,
                          const at::Tensor& position_ids) {
  at::Tensor out = x;
  for (const Steering& steer : steering) {
    if (steer.layer != layer || steer.scale == 0.0) continue;
    NLA_CHECK(steer.vector.defined() && steer.vector.numel() == x.size(2), "steering at layer ", layer,
              ": expected a vector of ", x.size(2), " elements");
    // scale * v in float32, added in the residual's dtype (out of place: autograd and the
    // captured tensors stay intact).
    at::Tensor addition = (steer.vector.to(x.device(), at::kFloat).reshape({x.size(2)}) * steer.scale).to(x.dtype());
    if (steer.positions.empty()) {
      out = out + addition;  // (B, T, C) + (C)
    } else {
      at::Tensor wanted = at::tensor(steer.positions, at::kLong).to(x.device());
      at::Tensor hit = at::isin(position_ids, wanted).unsqueeze(-1).to(x.dtype());  // (B, T, 1)
      out = out + hit * addition;
    }
  }
  return out;
}

at::Tensor default_position_ids(const at::Tensor& attention_mask, int64_t past, int64_t b, int64_t t,
                                c10::Device device) {
  if (attention_mask.defined())
    return (attention_mask.to(at::kLong).cumsum(-1) - 1).clamp_min(0).narrow(1, past, t);
  return at::arange(past, past + t, at::TensorOptions().dtype(at::kLong).device(device)).expand({b, t});
}

at::Tensor Qwen2Model::embed(const at::Tensor& input_ids) const {
  return at::embedding(weights_.embed_tokens, input_ids);  // (B, T, C)
}

KVCache Qwen2Model::make_cache(int64_t batch, int64_t capacity) const {
  KVCache cache;
  cache.capacity = capacity;
  auto options = at::TensorOptions().dtype(dtype()).device(device());
  auto [cos, sin] = rotary(at::arange(capacity, options.dtype(at::kLong)).unsqueeze(0), config_.head_dim(),
                           config_.rope_theta, dtype());  // (1, 1, capacity, D)
  cache.rotary_cos = cos.view({capacity, config_.head_dim()});
  cache.rotary_sin = sin.view({capacity, config_.head_dim()});
  for (int64_t l = 0; l < num_loaded_layers(); ++l) {
    cache.keys.push_back(at::zeros({batch, config_.num_key_value_heads, capacity, config_.head_dim()}, options));
    cache.values.push_back(at::zeros({batch, config_.num_key_value_heads, capacity, config_.head_dim()}, options));
  }
  return cache;
}

ForwardOutput Qwen2Model::forward(const ForwardInput& input, const ForwardOptions& options, KVCache* cache) const {
  const Qwen2Config& cfg = config_;
  const int64_t n_heads = cfg.num_attention_heads, n_kv = cfg.num_key_value_heads, d = cfg.head_dim();
  const int64_t c = cfg.hidden_size;

  at::Tensor x = input.inputs_embeds.defined() ? input.inputs_embeds.to(dtype()) : embed(input.input_ids);  // (B, T, C)
  NLA_CHECK(x.dim() == 3 && x.size(2) == c, "inputs: expected (B, T, ", c, ")");
  const int64_t b = x.size(0), t = x.size(1);
  if (input.injection.defined())  // out of place, so gradients reach the injected vectors
    x = x.reshape({b * t, c})
            .index_copy(0, input.injection.batch_index * t + input.injection.position,
                        input.injection.vectors.to(x.dtype()))
            .view({b, t, c});

  const int64_t past = cache ? cache->length : 0;
  const bool static_step = cache && cache->write_column.defined();
  if (static_step) NLA_CHECK(t == 1, "a static-shape decode step takes one token per row");
  const int64_t s = static_step ? cache->capacity : past + t;
  if (cache) NLA_CHECK(s <= cache->capacity, "KV cache full: ", s, " > ", cache->capacity);
  at::Tensor mask = input.attention_mask;  // (B, S)
  if (mask.defined()) NLA_CHECK(mask.dim() == 2 && mask.size(0) == b && mask.size(1) == s, "attention_mask shape");
  at::Tensor bias = input.attention_bias;  // (B, 1, T, S)
  if (bias.defined())
    NLA_CHECK(!mask.defined() && input.position_ids.defined() && bias.dim() == 4 && bias.size(0) == b &&
                  bias.size(2) == t && bias.size(3) == s,
              "attention_bias: (B, 1, T, S) with position_ids and without attention_mask");

  at::Tensor position_ids = input.position_ids;  // (B, T)
  if (!position_ids.defined()) position_ids = default_position_ids(mask, past, b, t, x.device());
  at::Tensor cos, sin;  // (B, 1, T, D)
  if (cache && cache->rotary_cos.defined()) {
    at::Tensor flat = position_ids.reshape({-1});
    cos = cache->rotary_cos.index_select(0, flat).view({b, 1, t, d});
    sin = cache->rotary_sin.index_select(0, flat).view({b, 1, t, d});
  } else {
    std::tie(cos, sin) = rotary(position_ids, d, cfg.rope_theta, x.scalar_type());
  }

  // Additive attention bias (B|1, 1, T, S): 0 where query i may see key j (j <= past + i and
  // j not padding), the lowest float elsewhere (finite, so fully padded rows stay finite).
  const bool causal_only = !bias.defined() && !mask.defined() && past == 0 && t > 1;
  if (!bias.defined() && (mask.defined() || t > 1)) {
    auto long_options = at::TensorOptions().dtype(at::kLong).device(x.device());
    at::Tensor query_pos = at::arange(past, s, long_options).unsqueeze(1);  // (T, 1)
    at::Tensor key_pos = at::arange(0, s, long_options).unsqueeze(0);       // (1, S)
    at::Tensor allowed = (key_pos <= query_pos).view({1, 1, t, s});
    if (mask.defined()) allowed = allowed.logical_and(mask.to(at::kBool).view({b, 1, 1, s}));
    bias = at::zeros(allowed.sizes(), x.options().dtype(at::kFloat))
               .masked_fill_(allowed.logical_not(), std::numeric_limits<float>::lowest());
  }

  int64_t n_run = options.stop_after_layer >= 0 ? options.stop_after_layer + 1 : num_loaded_layers();
  NLA_CHECK(n_run <= num_loaded_layers(), "stop_after_layer ", options.stop_after_layer, " but only ",
            num_loaded_layers(), " blocks are loaded");
  ForwardOutput out;
  for (int64_t l = 0; l < n_run; ++l) {
    const Qwen2Block& w = weights_.layers[static_cast<size_t>(l)];
    at::Tensor h = rms_norm(x, w.input_layernorm, cfg.rms_norm_eps);
    at::Tensor q = at::linear(h, w.q_proj_weight, w.q_proj_bias).view({b, t, n_heads, d}).transpose(1, 2);  // (B, H, T, D)
    at::Tensor k = at::linear(h, w.k_proj_weight, w.k_proj_bias).view({b, t, n_kv, d}).transpose(1, 2);     // (B, KV, T, D)
    at::Tensor v = at::linear(h, w.v_proj_weight, w.v_proj_bias).view({b, t, n_kv, d}).transpose(1, 2);     // (B, KV, T, D)
    q = q * cos + rotate_half(q) * sin;
    k = k * cos + rotate_half(k) * sin;
    if (static_step) {  // the column comes from the device, so a replay writes the step's own
      cache->keys[static_cast<size_t>(l)].index_copy_(2, cache->write_column, k);
      cache->values[static_cast<size_t>(l)].index_copy_(2, cache->write_column, v);
      k = cache->keys[static_cast<size_t>(l)];  // (B, KV, capacity, D)
      v = cache->values[static_cast<size_t>(l)];
    } else if (cache) {
      cache->keys[static_cast<size_t>(l)].narrow(2, past, t).copy_(k);
      cache->values[static_cast<size_t>(l)].narrow(2, past, t).copy_(v);
      k = cache->keys[static_cast<size_t>(l)].narrow(2, 0, s);  // (B, KV, S, D)
      v = cache->values[static_cast<size_t>(l)].narrow(2, 0, s);
    }
    at::Tensor a = attention(q, k, v, bias, causal_only, options.fused_attention);  // (B, H, T, D)
    x = x + at::linear(a.transpose(1, 2).reshape({b, t, c}), w.o_proj_weight);
    h = rms_norm(x, w.post_attention_layernorm, cfg.rms_norm_eps);
    at::Tensor mlp = at::silu(at::linear(h, w.gate_proj_weight)) * at::linear(h, w.up_proj_weight);  // (B, T, I)
    x = x + at::linear(mlp, w.down_proj_weight);
    if (!options.steering.empty()) x = apply_steering(x, options.steering, l, position_ids);
    if (std::find(options.capture_layers.begin(), options.capture_layers.end(), l) != options.capture_layers.end())
      out.captured[l] = x;
  }
  for (int64_t l : options.capture_layers)
    NLA_CHECK(out.captured.count(l), "capture layer ", l, " not computed (ran ", n_run, " blocks)");
  if (cache && !static_step) cache->length = s;
  out.hidden = x;

  const bool full_depth = n_run == cfg.num_hidden_layers;
  if (options.compute_logits && options.stop_after_layer < 0 && has_head() && full_depth) {
    at::Tensor last = x;  // (B, T, C)
    if (options.logits_index.defined()) {
      // (B) -> rows (B); (B, K) -> rows (B * K), reshaped after the head.
      at::Tensor rows = at::arange(b, options.logits_index.options()) * t;  // (B)
      rows = options.logits_index.dim() == 2 ? rows.unsqueeze(1) + options.logits_index : rows + options.logits_index;
      last = x.reshape({b * t, c}).index_select(0, rows.reshape({-1}));  // (B [* K], C)
      if (options.logits_index.dim() == 2) last = last.view({b, options.logits_index.size(1), c});  // (B, K, C)
    }
    last = rms_norm(last, weights_.norm, cfg.rms_norm_eps);
    // The head has no bias, so logits / T = head(last / T).
    if (options.logit_temperature != 1.0) last = last / options.logit_temperature;
    const at::Tensor& head = weights_.lm_head.defined() ? weights_.lm_head : weights_.embed_tokens;
    if (options.greedy_tokens) {
      NLA_CHECK(options.logits_index.defined() && options.logits_index.dim() == 1 && !options.target_ids.defined(),
                "greedy_tokens needs a (B) logits_index");
      // The argmax where the logits are: on a GPU only B ids leave the device, and inside a
      // captured decode step nothing does. On the CPU the head and the argmax are one pass
      // (head_argmax.hpp) where the kernel runs; else logits and a scan.
      if (last.is_cpu()) out.next_tokens = head_argmax_cpu(last, head);
      if (!out.next_tokens.defined()) {
        at::Tensor logits = at::linear(last, head);  // (B, V)
        out.next_tokens = logits.is_cpu() && logits.scalar_type() == at::kFloat ? argmax_rows_cpu(logits)
                                                                                 : logits.argmax(-1);  // (B)
      }
    } else if (options.target_ids.defined()) {
      NLA_CHECK(options.logits_index.defined() && options.target_ids.sizes() == options.logits_index.sizes(),
                "target_ids must come with a logits_index of the same shape");
      out.token_logprobs = token_logprobs(last, head, options.target_ids);  // (B [, K])
    } else {
      out.logits = at::linear(last, head).to(at::kFloat);  // (B, [T,] V)
    }
  }
  return out;
}

}  // namespace nla::model
