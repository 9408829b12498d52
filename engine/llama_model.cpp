#include "engine/llama_model.h"

#include <torch/version.h>

#include <cmath>

#include "common/base/log.h"

namespace lema::engine {

const at::Tensor& LayerWeights::proj(LoraTarget target) const {
  switch (target) {
    case LoraTarget::kQ: return q_proj;
    case LoraTarget::kK: return k_proj;
    case LoraTarget::kV: return v_proj;
    case LoraTarget::kO: return o_proj;
    case LoraTarget::kGate: return gate_proj;
    case LoraTarget::kUp: return up_proj;
    case LoraTarget::kDown: return down_proj;
  }
  return q_proj;
}

std::vector<std::string> layer_tensor_names(int64_t layer) {
  const std::string p = "model.layers." + std::to_string(layer) + ".";
  return {p + "input_layernorm.weight", p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight",
          p + "self_attn.v_proj.weight", p + "self_attn.o_proj.weight", p + "post_attention_layernorm.weight",
          p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight", p + "mlp.down_proj.weight"};
}

std::vector<std::vector<int64_t>> layer_tensor_shapes(const ModelConfig& c) {
  const int64_t h = c.hidden_size, q = c.n_heads * c.head_dim, kv = c.n_kv_heads * c.head_dim;
  const int64_t i = c.intermediate_size;
  return {{h}, {q, h}, {kv, h}, {kv, h}, {h, q}, {h}, {i, h}, {i, h}, {h, i}};
}

// ---------------------------------------------------------------------------
// RoPE: HF's _compute_default_rope_parameters, _compute_linear_scaling_...
// and _compute_llama3_parameters, op for op in float32.

Rope::Rope(const ModelConfig& config) {
  const int64_t dim = config.head_dim;
  const at::Tensor exponents =
      at::arange(0, dim, 2, at::TensorOptions().dtype(at::kLong)).to(at::kFloat) / static_cast<double>(dim);
  at::Tensor inv_freq = 1.0 / at::pow(config.rope_theta, exponents);  // [hd/2]
  const RopeScaling& s = config.rope_scaling;
  if (s.type == RopeScalingType::kLinear) {
    inv_freq = inv_freq / s.factor;
  } else if (s.type == RopeScalingType::kLlama3) {
    const double old_context_len = static_cast<double>(s.original_max_position_embeddings);
    const double low_freq_wavelen = old_context_len / s.low_freq_factor;
    const double high_freq_wavelen = old_context_len / s.high_freq_factor;
    const at::Tensor wavelen = 2 * M_PI / inv_freq;
    // wavelen < high_freq_wavelen: unchanged; wavelen > low_freq_wavelen: divided by factor
    at::Tensor inv_freq_llama = at::where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq);
    // otherwise interpolate with a smooth factor
    const at::Tensor smooth_factor =
        (old_context_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
    const at::Tensor smoothed_inv_freq =
        (1 - smooth_factor) * inv_freq_llama / s.factor + smooth_factor * inv_freq_llama;
    const at::Tensor is_medium_freq = (wavelen < high_freq_wavelen).logical_not() & (wavelen > low_freq_wavelen).logical_not();
    inv_freq_llama = at::where(is_medium_freq, smoothed_inv_freq, inv_freq_llama);
    inv_freq = inv_freq_llama;
  }
  inv_freq_ = inv_freq.contiguous();
}

std::pair<at::Tensor, at::Tensor> Rope::cos_sin(int64_t seq_len, at::ScalarType dtype, at::Device device) const {
  // HF: freqs = inv_freq[:, None] @ position_ids[None, :] (a k = 1 matmul,
  // i.e. an exact product), emb = cat(freqs, freqs), cos/sin in float32.
  const at::Tensor positions = at::arange(seq_len, at::TensorOptions().dtype(at::kFloat));
  const at::Tensor freqs = at::outer(positions, inv_freq_);  // [T, hd/2]
  const at::Tensor emb = at::cat({freqs, freqs}, -1);        // [T, hd]
  return {emb.cos().to(device, dtype), emb.sin().to(device, dtype)};
}

// ---------------------------------------------------------------------------
// Layer pieces

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  // Upcast to fp32 (fp64 stays fp64), normalise, cast back, then scale: HF's LlamaRMSNorm.
  const at::ScalarType wide = at::promote_types(x.scalar_type(), at::kFloat);
  const at::Tensor xf = x.to(wide);
  const at::Tensor variance = xf.pow(2).mean(-1, /*keepdim=*/true);
  return weight * (xf * at::rsqrt(variance + eps)).to(x.scalar_type());
}

static at::Tensor rotate_half(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  return x * cos + rotate_half(x) * sin;
}

// HF's repeat_kv: [B, nkv, T, hd] -> [B, nkv * n_rep, T, hd], each kv head
// repeated n_rep times in a row.
static at::Tensor repeat_kv(const at::Tensor& x, int64_t n_rep) {
  if (n_rep == 1) return x;
  const int64_t b = x.size(0), nkv = x.size(1), t = x.size(2), hd = x.size(3);
  return x.unsqueeze(2).expand({b, nkv, n_rep, t, hd}).reshape({b, nkv * n_rep, t, hd});
}

at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  const int64_t n_rep = q.size(1) / k.size(1);
  const at::Tensor kr = repeat_kv(k, n_rep);
  const at::Tensor vr = repeat_kv(v, n_rep);
#if TORCH_VERSION_MAJOR >= 2
  return at::scaled_dot_product_attention(q, kr, vr, /*attn_mask=*/{}, /*dropout_p=*/0.0, /*is_causal=*/true);
#else
  // HF's eager_attention_forward: scores * scaling + mask, softmax in fp32.
  const int64_t t = q.size(2);
  const double scaling = 1.0 / std::sqrt(static_cast<double>(q.size(3)));
  at::Tensor scores = at::matmul(q, kr.transpose(2, 3)) * scaling;  // [B, nh, T, T]
  const at::Tensor future = at::ones({t, t}, q.options().dtype(at::kBool)).triu(1);
  scores = scores.masked_fill(future, -std::numeric_limits<double>::infinity());
  const at::ScalarType wide = at::promote_types(q.scalar_type(), at::kFloat);
  const at::Tensor probs = at::softmax(scores, -1, wide).to(q.scalar_type());
  return at::matmul(probs, vr);
#endif
}

at::Tensor decoder_layer_forward(const at::Tensor& x, const LayerWeights& w, const LayerLora& lora,
                                 const LayerContext& ctx) {
  const ModelConfig& c = *ctx.config;
  const int64_t b = x.size(0), t = x.size(1), hd = c.head_dim;
  auto proj = [&](const at::Tensor& in, LoraTarget target) {
    return lora_linear(in, w.proj(target), lora[target], mix_seed(ctx.dropout_seed, static_cast<uint64_t>(target)));
  };

  // Self-attention block.
  const at::Tensor h = rms_norm(x, w.input_norm, c.rms_norm_eps);                       // [B, T, H]
  at::Tensor q = proj(h, LoraTarget::kQ).view({b, t, c.n_heads, hd}).transpose(1, 2);   // [B, nh, T, hd]
  at::Tensor k = proj(h, LoraTarget::kK).view({b, t, c.n_kv_heads, hd}).transpose(1, 2);  // [B, nkv, T, hd]
  const at::Tensor v = proj(h, LoraTarget::kV).view({b, t, c.n_kv_heads, hd}).transpose(1, 2);
  q = apply_rope(q, ctx.cos, ctx.sin);
  k = apply_rope(k, ctx.cos, ctx.sin);
  const at::Tensor attn = causal_attention(q, k, v).transpose(1, 2).reshape({b, t, c.n_heads * hd});
  const at::Tensor x1 = x + proj(attn, LoraTarget::kO);

  // MLP block: down(silu(gate(h)) * up(h)).
  const at::Tensor h2 = rms_norm(x1, w.post_norm, c.rms_norm_eps);
  const at::Tensor act = at::silu(proj(h2, LoraTarget::kGate)) * proj(h2, LoraTarget::kUp);  // [B, T, I]
  return x1 + proj(act, LoraTarget::kDown);
}

at::Tensor embed_tokens(const at::Tensor& input_ids, const HeadWeights& head) {
  return at::embedding(head.embed, input_ids);
}

at::Tensor shift_labels(const at::Tensor& labels) {
  const int64_t t = labels.size(1);
  const at::Tensor pad = at::full({labels.size(0), 1}, -100, labels.options());
  return at::cat({labels.narrow(1, 1, t - 1), pad}, 1);
}

// The chunked head of head_loss_backward and head_loss: one code path, so
// evaluation reports exactly the loss training optimises. With `backward`
// false nothing is recorded for autograd and grad_hidden stays undefined.
static HeadLossResult head_loss_chunked(const at::Tensor& hidden, const at::Tensor& labels, const HeadWeights& head,
                                        const ModelConfig& config, double loss_denominator, int64_t chunk_tokens,
                                        bool backward) {
  at::AutoGradMode grad_mode(backward);
  const int64_t hsz = hidden.size(-1);
  const at::Tensor x = backward ? hidden.detach().requires_grad_(true) : hidden;                  // [B, T, H]
  const at::Tensor normed = rms_norm(x, head.final_norm, config.rms_norm_eps).reshape({-1, hsz});  // [N, H]
  const at::Tensor targets = shift_labels(labels).reshape({-1}).to(hidden.device());            // [N]
  const at::Tensor valid = (targets != -100).nonzero().squeeze(1);                              // [Nv]
  HeadLossResult result;
  result.n_valid = valid.size(0);
  if (result.n_valid == 0) {
    if (backward) result.grad_hidden = at::zeros_like(hidden);
    return result;
  }
  const at::Tensor rows = normed.index_select(0, valid);          // [Nv, H]
  const at::Tensor row_targets = targets.index_select(0, valid);  // [Nv]
  // Logits exist chunk by chunk only: each chunk's loss is backpropagated
  // into a detached copy of the rows before the next chunk is computed.
  const at::Tensor rows_leaf = backward ? rows.detach().requires_grad_(true) : rows;
  const at::ScalarType wide = at::promote_types(hidden.scalar_type(), at::kFloat);
  at::Tensor loss_sum = at::zeros({}, hidden.options().dtype(wide));
  for (int64_t start = 0; start < result.n_valid; start += chunk_tokens) {
    const int64_t n = std::min(chunk_tokens, result.n_valid - start);
    const at::Tensor logits = at::linear(rows_leaf.narrow(0, start, n), head.lm_head).to(wide);  // [n, V]
    const at::Tensor loss = at::cross_entropy_loss(logits, row_targets.narrow(0, start, n), /*weight=*/{},
                                                   at::Reduction::Sum, /*ignore_index=*/-100, /*label_smoothing=*/0.0);
    if (backward) (loss / loss_denominator).backward();
    loss_sum += loss.detach();
  }
  result.loss_sum = loss_sum.item<double>();
  if (backward) {
    rows.backward(rows_leaf.grad());
    result.grad_hidden = x.grad();
  }
  return result;
}

HeadLossResult head_loss_backward(const at::Tensor& hidden, const at::Tensor& labels, const HeadWeights& head,
                                  const ModelConfig& config, double loss_denominator, int64_t chunk_tokens) {
  return head_loss_chunked(hidden, labels, head, config, loss_denominator, chunk_tokens, /*backward=*/true);
}

HeadLossResult head_loss(const at::Tensor& hidden, const at::Tensor& labels, const HeadWeights& head,
                         const ModelConfig& config, int64_t chunk_tokens) {
  return head_loss_chunked(hidden, labels, head, config, 1.0, chunk_tokens, /*backward=*/false);
}

at::Tensor head_logits(const at::Tensor& hidden, const HeadWeights& head, const ModelConfig& config) {
  return at::linear(rms_norm(hidden, head.final_norm, config.rms_norm_eps), head.lm_head);
}

}  // namespace lema::engine
