#include "engine/llama_model.h"

#include <torch/version.h>

#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "common/base/log.h"
#include "common/formats/model_layout.h"
#include "common/formats/rope_scaling.h"
#include "engine/row_stream.h"

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
    case LoraTarget::kQkv: return qkv_proj;
    case LoraTarget::kGateUp: return gate_up_proj;
  }
  return q_proj;
}

at::Tensor LayerWeights::bias(LoraTarget target) const {
  switch (target) {
    case LoraTarget::kQ: return q_bias;
    case LoraTarget::kK: return k_bias;
    case LoraTarget::kV: return v_bias;
    default: return {};
  }
}

namespace {

// Which member holds the tensor of each layer suffix (model_layout.h).
at::Tensor LayerWeights::*member_of(const std::string& suffix) {
  static const std::pair<const char*, at::Tensor LayerWeights::*> kMembers[] = {
      {"input_layernorm.weight", &LayerWeights::input_norm},
      {"self_attn.q_proj.weight", &LayerWeights::q_proj},
      {"self_attn.k_proj.weight", &LayerWeights::k_proj},
      {"self_attn.v_proj.weight", &LayerWeights::v_proj},
      {"self_attn.o_proj.weight", &LayerWeights::o_proj},
      {"post_attention_layernorm.weight", &LayerWeights::post_norm},
      {"mlp.gate_proj.weight", &LayerWeights::gate_proj},
      {"mlp.up_proj.weight", &LayerWeights::up_proj},
      {"mlp.down_proj.weight", &LayerWeights::down_proj},
      {"self_attn.q_proj.bias", &LayerWeights::q_bias},
      {"self_attn.k_proj.bias", &LayerWeights::k_bias},
      {"self_attn.v_proj.bias", &LayerWeights::v_bias},
      {"pre_feedforward_layernorm.weight", &LayerWeights::pre_ffn_norm},
      {"post_feedforward_layernorm.weight", &LayerWeights::post_ffn_norm},
      {"self_attn.q_norm.weight", &LayerWeights::q_norm},
      {"self_attn.k_norm.weight", &LayerWeights::k_norm},
      {"self_attn.qkv_proj.weight", &LayerWeights::qkv_proj},
      {"mlp.gate_up_proj.weight", &LayerWeights::gate_up_proj},
  };
  for (const auto& [name, member] : kMembers)
    if (suffix == name) return member;
  LEMA_CHECK_MSG(false, "no LayerWeights member for layer tensor " + suffix);
  return nullptr;
}

}  // namespace

LayerWeights layer_weights_from(const ModelConfig& config, const std::vector<at::Tensor>& tensors) {
  const std::vector<std::string> suffixes = layer_tensor_suffixes(config);
  LEMA_CHECK_MSG(tensors.size() == suffixes.size(), "layer_weights_from: wrong tensor count");
  LayerWeights w;
  for (size_t k = 0; k < suffixes.size(); ++k) w.*member_of(suffixes[k]) = tensors[k];
  return w;
}

std::vector<at::Tensor> layer_weights_list(const ModelConfig& config, const LayerWeights& w) {
  std::vector<at::Tensor> out;
  for (const std::string& s : layer_tensor_suffixes(config)) out.push_back(w.*member_of(s));
  return out;
}

std::vector<std::string> layer_tensor_names(const ModelConfig& config, int64_t layer) {
  std::vector<std::string> names;
  for (const std::string& s : layer_tensor_suffixes(config)) names.push_back(layer_tensor_name(layer, s));
  return names;
}

std::vector<std::vector<int64_t>> layer_tensor_shapes(const ModelConfig& c) {
  std::vector<std::vector<int64_t>> shapes;
  for (const std::string& s : layer_tensor_suffixes(c)) shapes.push_back(layer_tensor_shape(c, s));
  return shapes;
}

// ---------------------------------------------------------------------------
// RoPE: HF's _compute_default_rope_parameters, _compute_linear_scaling_...,
// _compute_llama3_parameters and _compute_longrope_parameters, op for op in
// float32.

Rope::Rope(const ModelConfig& config, bool local) {
  const int64_t dim = config.rotary_dim();
  const at::Tensor exponents =
      at::arange(0, dim, 2, at::TensorOptions().dtype(at::kLong)).to(at::kFloat) / static_cast<double>(dim);
  const double base = local ? config.rope_local_base_freq : config.rope_theta;
  at::Tensor inv_freq = 1.0 / at::pow(base, exponents);  // [hd/2]
  const RopeScaling s = local ? RopeScaling{} : config.rope_scaling;
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
  } else if (s.type == RopeScalingType::kLongrope) {
    // inv_freq = 1 / (ext_factors * base^(2i/dim)), ext = short or long list.
    const at::Tensor base_pow = at::pow(base, exponents);
    const auto factors = [](const std::vector<double>& f) { return at::tensor(f, at::kDouble).to(at::kFloat); };
    inv_freq = 1.0 / (factors(s.short_factor) * base_pow);
    inv_freq_long_ = (1.0 / (factors(s.long_factor) * base_pow)).contiguous();
    long_from_ = s.original_max_position_embeddings;
    // The one computation the GGUF export writes for llama.cpp too.
    attention_scaling_ = longrope_attention_factor(config);
  }
  inv_freq_ = inv_freq.contiguous();
}

std::pair<at::Tensor, at::Tensor> Rope::cos_sin(int64_t seq_len, at::ScalarType dtype, at::Device device,
                                                bool long_context) const {
  // HF: freqs = inv_freq[:, None] @ position_ids[None, :] (a k = 1 matmul,
  // i.e. an exact product), emb = cat(freqs, freqs), cos/sin in float32.
  const at::Tensor& inv_freq = long_context && inv_freq_long_.defined() ? inv_freq_long_ : inv_freq_;
  const at::Tensor positions = at::arange(seq_len, at::TensorOptions().dtype(at::kFloat));
  const at::Tensor freqs = at::outer(positions, inv_freq);  // [T, rd/2]
  const at::Tensor emb = at::cat({freqs, freqs}, -1);       // [T, rd]
  if (attention_scaling_ == 1.0) return {emb.cos().to(device, dtype), emb.sin().to(device, dtype)};
  // LongRoPE scales cos and sin in float32, before the cast.
  return {(emb.cos() * attention_scaling_).to(device, dtype), (emb.sin() * attention_scaling_).to(device, dtype)};
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

at::Tensor model_norm(const at::Tensor& x, const at::Tensor& weight, const ModelConfig& config) {
  if (!config.unit_offset_norm()) return rms_norm(x, weight, config.rms_norm_eps);
  // Gemma: the scale (1 + w) is applied in fp32, before the cast back.
  const at::ScalarType wide = at::promote_types(x.scalar_type(), at::kFloat);
  const at::Tensor xf = x.to(wide);
  const at::Tensor variance = xf.pow(2).mean(-1, /*keepdim=*/true);
  return ((xf * at::rsqrt(variance + config.rms_norm_eps)) * (1.0 + weight.to(wide))).to(x.scalar_type());
}

static at::Tensor rotate_half(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t rd = cos.size(-1);
  if (rd == x.size(-1)) return x * cos + rotate_half(x) * sin;
  // Partial rotary (Phi-4-mini): rotate the first rd dimensions, pass the rest.
  const at::Tensor rot = x.narrow(-1, 0, rd);
  return at::cat({rot * cos + rotate_half(rot) * sin, x.narrow(-1, rd, x.size(-1) - rd)}, -1);
}

// HF's repeat_kv: [B, nkv, T, hd] -> [B, nkv * n_rep, T, hd], each kv head
// repeated n_rep times in a row.
static at::Tensor repeat_kv(const at::Tensor& x, int64_t n_rep) {
  if (n_rep == 1) return x;
  const int64_t b = x.size(0), nkv = x.size(1), t = x.size(2), hd = x.size(3);
  return x.unsqueeze(2).expand({b, nkv, n_rep, t, hd}).reshape({b, nkv * n_rep, t, hd});
}

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale, double softcap,
                     const at::Tensor& allowed_in, int64_t window) {
  const int64_t n_rep = q.size(1) / k.size(1);
  const at::Tensor kr = repeat_kv(k, n_rep);
  const at::Tensor vr = repeat_kv(v, n_rep);
  const int64_t t = q.size(2), s = k.size(2);
  at::Tensor allowed = allowed_in;
  if (!allowed.defined() && window > 0) {
    // Query i sees keys (i - window, i] (transformers' sliding_window_overlay).
    const at::Tensor qi = at::arange(t, q.options().dtype(at::kLong)).view({t, 1});
    const at::Tensor kj = at::arange(s, q.options().dtype(at::kLong)).view({1, s});
    allowed = ((kj <= qi) & (kj > qi - window)).view({1, 1, t, s});
  }
#if TORCH_VERSION_MAJOR >= 2
  if (softcap <= 0) {
    if (!allowed.defined()) {
      return at::scaled_dot_product_attention(q, kr, vr, /*attn_mask=*/{}, /*dropout_p=*/0.0, /*is_causal=*/true, scale);
    }
    return at::scaled_dot_product_attention(q, kr, vr, allowed, /*dropout_p=*/0.0, /*is_causal=*/false, scale);
  }
#endif
  // HF's eager_attention_forward: scores * scaling (soft-capped), + mask,
  // softmax in fp32.
  at::Tensor scores = at::matmul(q, kr.transpose(2, 3)) * scale;  // [B, nh, T, S]
  if (softcap > 0) scores = at::tanh(scores / softcap) * softcap;
  if (allowed.defined()) {
    scores = scores.masked_fill(allowed.logical_not(), -std::numeric_limits<double>::infinity());
  } else {
    const at::Tensor future = at::ones({t, s}, q.options().dtype(at::kBool)).triu(1);
    scores = scores.masked_fill(future, -std::numeric_limits<double>::infinity());
  }
  const at::ScalarType wide = at::promote_types(q.scalar_type(), at::kFloat);
  const at::Tensor probs = at::softmax(scores, -1, wide).to(q.scalar_type());
  return at::matmul(probs, vr);
}

at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  return attention(q, k, v, 1.0 / std::sqrt(static_cast<double>(q.size(3))), 0.0, {}, 0);
}

LayerContext make_layer_context(const ModelConfig& config, int64_t seq_len, at::ScalarType dtype, at::Device device,
                                int64_t rope_context_len) {
  LayerContext ctx;
  ctx.config = &config;
  const Rope rope(config);
  const bool long_context = rope.long_context(rope_context_len > 0 ? rope_context_len : seq_len);
  std::tie(ctx.cos, ctx.sin) = rope.cos_sin(seq_len, dtype, device, long_context);
  if (config.rope_local_base_freq > 0) {
    std::tie(ctx.cos_local, ctx.sin_local) = Rope(config, /*local=*/true).cos_sin(seq_len, dtype, device);
  }
  return ctx;
}

LayerContext micro_batch_context(const ModelConfig& config, const MicroBatch& mb, at::ScalarType dtype,
                                 at::Device device) {
  const int64_t b = mb.input_ids.size(0), t = mb.input_ids.size(1);
  if (!mb.segment_ids.defined()) return make_layer_context(config, t, dtype, device);
  LEMA_CHECK(mb.position_ids.defined() && mb.segment_ids.sizes() == mb.input_ids.sizes() &&
             mb.position_ids.sizes() == mb.input_ids.sizes());
  const at::Tensor positions = mb.position_ids.to(device);  // [B, T]
  const int64_t longest = positions.max().item<int64_t>() + 1;
  // Tables over 0..T-1 (every position is below T), gathered per token: a
  // position takes the value it has in an unpacked forward.
  LayerContext ctx = make_layer_context(config, t, dtype, device, longest);
  auto per_token = [&](const at::Tensor& table) {  // [L, rd] -> [B, 1, T, rd]
    return table.index_select(0, positions.reshape({-1})).view({b, 1, t, table.size(1)});
  };
  ctx.cos = per_token(ctx.cos);
  ctx.sin = per_token(ctx.sin);
  if (ctx.cos_local.defined()) {
    ctx.cos_local = per_token(ctx.cos_local);
    ctx.sin_local = per_token(ctx.sin_local);
  }
  // Query i sees key j of its own example at j <= i. Padding (segment 0)
  // sees earlier padding and itself, never a real token, and no real token
  // sees it; its outputs are never read (labels -100), but a row of all
  // -inf would make NaNs. An example's tokens are contiguous, so index
  // differences are position differences for the sliding window.
  const at::Tensor segments = mb.segment_ids.to(device);
  const at::Tensor same = segments.unsqueeze(2) == segments.unsqueeze(1);  // [B, T, T]
  const at::Tensor qi = at::arange(t, positions.options()).view({t, 1});
  const at::Tensor kj = at::arange(t, positions.options()).view({1, t});
  ctx.allowed = (same & (kj <= qi).unsqueeze(0)).unsqueeze(1);  // [B, 1, T, T]
  if (config.sliding_window > 0) ctx.allowed_local = ctx.allowed & (kj > qi - config.sliding_window).view({1, 1, t, t});
  return ctx;
}

at::Tensor decoder_layer_forward(const at::Tensor& x, const LayerWeights& w, const LayerLora& lora,
                                 const LayerContext& ctx) {
  const ModelConfig& c = *ctx.config;
  const int64_t b = x.size(0), t = x.size(1), hd = c.head_dim;
  const bool sliding = c.is_sliding(ctx.layer);
  auto proj = [&](const at::Tensor& in, LoraTarget target) {
    at::Tensor y = lora_linear(in, w.proj(target), lora[target], mix_seed(ctx.dropout_seed, static_cast<uint64_t>(target)));
    const at::Tensor bias = w.bias(target);
    return bias.defined() ? y + bias : y;
  };

  // Self-attention block.
  const at::Tensor h = model_norm(x, w.input_norm, c);  // [B, T, H]
  at::Tensor q, k, v;
  if (c.fused_projections()) {
    // Phi-3: one projection (one LoRA pair) whose rows are q, k, v.
    const at::Tensor qkv = proj(h, LoraTarget::kQkv);  // [B, T, nh*hd + 2*nkv*hd]
    q = qkv.narrow(-1, 0, c.q_dim());
    k = qkv.narrow(-1, c.q_dim(), c.kv_dim());
    v = qkv.narrow(-1, c.q_dim() + c.kv_dim(), c.kv_dim());
  } else {
    q = proj(h, LoraTarget::kQ);
    k = proj(h, LoraTarget::kK);
    v = proj(h, LoraTarget::kV);
  }
  q = q.reshape({b, t, c.n_heads, hd});                       // [B, T, nh, hd]
  k = k.reshape({b, t, c.n_kv_heads, hd});                    // [B, T, nkv, hd]
  v = v.reshape({b, t, c.n_kv_heads, hd}).transpose(1, 2);    // [B, nkv, T, hd]
  if (c.qk_norm()) {
    q = model_norm(q, w.q_norm, c);
    k = model_norm(k, w.k_norm, c);
  }
  const bool local_rope = sliding && ctx.cos_local.defined();
  const at::Tensor& cos = local_rope ? ctx.cos_local : ctx.cos;
  const at::Tensor& sin = local_rope ? ctx.sin_local : ctx.sin;
  q = apply_rope(q.transpose(1, 2), cos, sin);  // [B, nh, T, hd]
  k = apply_rope(k.transpose(1, 2), cos, sin);  // [B, nkv, T, hd]
  at::Tensor attn;
  if (ctx.cache != nullptr) {
    const int64_t end = ctx.cache_offset + t;
    ctx.cache->k.narrow(2, ctx.cache_offset, t).copy_(k);
    ctx.cache->v.narrow(2, ctx.cache_offset, t).copy_(v);
    attn = attention(q, ctx.cache->k.narrow(2, 0, end), ctx.cache->v.narrow(2, 0, end), c.attention_scale(),
                     c.attn_logit_softcapping, sliding ? ctx.allowed_local : ctx.allowed, 0);
  } else {
    // Packed rows bring their mask; plain rows are causal (the window is
    // applied only where no mask is given).
    attn = attention(q, k, v, c.attention_scale(), c.attn_logit_softcapping, sliding ? ctx.allowed_local : ctx.allowed,
                     sliding ? c.sliding_window : 0);
  }
  attn = attn.transpose(1, 2).reshape({b, t, c.n_heads * hd});
  at::Tensor attn_out = proj(attn, LoraTarget::kO);
  if (c.sandwich_norms()) attn_out = model_norm(attn_out, w.post_norm, c);
  const at::Tensor x1 = x + attn_out;

  // MLP block: down(act(gate(h)) * up(h)).
  const at::Tensor h2 = model_norm(x1, c.sandwich_norms() ? w.pre_ffn_norm : w.post_norm, c);
  at::Tensor gate, up;
  if (c.fused_projections()) {
    const at::Tensor gate_up = proj(h2, LoraTarget::kGateUp);  // [B, T, 2I]: gate, then up (HF's chunk(2))
    gate = gate_up.narrow(-1, 0, c.intermediate_size);
    up = gate_up.narrow(-1, c.intermediate_size, c.intermediate_size);
  } else {
    gate = proj(h2, LoraTarget::kGate);
    up = proj(h2, LoraTarget::kUp);
  }
  const at::Tensor act = (c.hidden_act == "silu" ? at::silu(gate) : at::gelu(gate, "tanh")) * up;
  at::Tensor mlp_out = proj(act, LoraTarget::kDown);
  if (c.sandwich_norms()) mlp_out = model_norm(mlp_out, w.post_ffn_norm, c);
  return x1 + mlp_out;
}

at::Tensor embed_tokens(const at::Tensor& input_ids, const HeadWeights& head, const ModelConfig& config) {
  // A streamed head gathers the rows where the table lives; only they move.
  const at::Tensor x = head.embed.device() == input_ids.device()
                           ? at::embedding(head.embed, input_ids)
                           : at::embedding(head.embed, input_ids.to(head.embed.device()))
                                 .to(input_ids.device(), /*non_blocking=*/true);
  if (!config.scaled_embedding()) return x;
  // Gemma: sqrt(hidden) rounded to the weights' dtype first, as HF does.
  const at::Tensor scale = at::scalar_tensor(std::sqrt(static_cast<double>(config.hidden_size)),
                                             at::TensorOptions().dtype(at::kFloat))
                               .to(x.scalar_type());
  return x * scale.to(x.device());
}

at::Tensor shift_labels(const at::Tensor& labels) {
  const int64_t t = labels.size(1);
  const at::Tensor pad = at::full({labels.size(0), 1}, -100, labels.options());
  return at::cat({labels.narrow(1, 1, t - 1), pad}, 1);
}

// Gemma 2's final soft-capping, in the compute dtype as HF applies it.
static at::Tensor softcap_logits(const at::Tensor& logits, const ModelConfig& config) {
  const double cap = config.final_logit_softcapping;
  return cap > 0 ? at::tanh(logits / cap) * cap : logits;
}

// The streamed head over every micro-batch at once and in one pass over the
// vocabulary, so that each lm_head chunk crosses to the device once per
// step (RowStream: the next chunk's copy overlaps this one's GEMMs) and
// each of its GEMMs runs once (a second pass recomputing the logits for the
// gradient cost Qwen2.5-7B 0.99x PEFT-gc at --vram 4GiB).
//
// Per micro-batch: the final norm without a graph, the valid rows [Nv, H].
// Per chunk, online softmax: a running max m per row keeps the sum of
// exponentials s finite; with the gradient alongside, an fp32 accumulator
//   G = sum over chunks of (exp(z - m) * dz/draw) @ W_chunk
// where z is the logit after the softcap and raw the GEMM's output, and
// G and s are rescaled by exp(m_old - m_new) whenever m grows. The
// target's part is kept apart (its column is left out of G): its logit,
// its slope dz/draw and its lm_head row, gathered from the chunk that
// holds it. At the end
//   lse = m + log s
//   d loss / d rows = (G * exp(m - lse) + slope_t * (p_t - 1) * W[target]) / denominator
// with p_t - 1 = expm1(z_t - lse) (softmax minus one-hot, through the
// softcap, times lm_head), and the norm is redone with autograd to carry
// it into the hidden states. The logits pass the same softcap and dtype
// casts as the resident path; each chunk's product is rounded to the
// compute dtype as the resident GEMM's gradient is, the sum over chunks is
// fp32 (a bf16 sum would round).
static std::vector<HeadLossResult> streamed_head_loss(const std::vector<at::Tensor>& hidden,
                                                      const std::vector<at::Tensor>& labels, const HeadWeights& head,
                                                      const ModelConfig& config, double loss_denominator,
                                                      bool backward) {
  const size_t n_micro = hidden.size();
  std::vector<HeadLossResult> results(n_micro);
  if (n_micro == 0) return results;
  const at::Device device = hidden[0].device();
  const at::ScalarType wide = at::promote_types(hidden[0].scalar_type(), at::kFloat);
  const double cap = config.final_logit_softcapping;
  struct Rows {
    at::Tensor valid;         // [Nv] indices into the flattened [B*T]
    at::Tensor rows;          // [Nv, H] normed, no graph
    at::Tensor targets;       // [Nv]
    at::Tensor running_max;   // [Nv] wide: m
    at::Tensor sum_exp;       // [Nv] wide: s, sum of exp(z - m)
    at::Tensor target_logit;  // [Nv] wide: z at the target
    at::Tensor target_slope;  // [Nv] wide: dz/draw at the target (a softcap only; else 1)
    at::Tensor target_rows;   // [Nv, H] compute dtype: lm_head[target]
    at::Tensor grad_sum;      // [Nv, H] wide: G
  };
  std::vector<Rows> mb(n_micro);
  at::NoGradGuard no_grad;
  // Created first: the first chunk's copy overlaps the final norms below.
  RowStream chunks(head.lm_head, head.vocab_chunk, device);
  for (size_t m = 0; m < n_micro; ++m) {
    Rows& r = mb[m];
    const at::Tensor targets = shift_labels(labels[m]).reshape({-1}).to(device);
    r.valid = (targets != -100).nonzero().squeeze(1);
    results[m].n_valid = r.valid.size(0);
    r.targets = targets.index_select(0, r.valid);
    const int64_t hsz = hidden[m].size(-1), n = results[m].n_valid;
    r.rows = model_norm(hidden[m], head.final_norm, config).reshape({-1, hsz}).index_select(0, r.valid);
    const auto wide_options = hidden[m].options().dtype(wide);
    r.running_max = at::full({n}, -std::numeric_limits<double>::infinity(), wide_options);
    r.sum_exp = at::zeros({n}, wide_options);
    r.target_logit = at::zeros({n}, wide_options);
    if (!backward) continue;
    if (cap > 0) r.target_slope = at::zeros({n}, wide_options);
    r.target_rows = at::zeros({n, hsz}, hidden[m].options());
    r.grad_sum = at::zeros({n, hsz}, wide_options);
  }
  // Column of each target inside chunk [v0, v0 + vn), and whether it is there.
  auto in_chunk = [](const at::Tensor& targets, int64_t v0, int64_t vn) {
    return std::make_pair((targets >= v0) & (targets < v0 + vn), at::clamp(targets - v0, 0, vn - 1).unsqueeze(1));
  };
  for (int64_t k = 0; k < chunks.n_chunks(); ++k) {
    const int64_t v0 = chunks.chunk_start(k);
    const at::Tensor w = chunks.next();  // [vn, H]
    const int64_t vn = w.size(0);
    for (Rows& r : mb) {
      if (r.rows.size(0) == 0) continue;
      const at::Tensor raw = at::linear(r.rows, w);  // [Nv, vn], compute dtype
      at::Tensor slope;                              // [Nv, vn] wide: d(cap * tanh(raw / cap)) / d raw
      if (backward && cap > 0) {
        const at::Tensor t = at::tanh(raw / cap).to(wide);
        slope = 1 - t * t;
      }
      at::Tensor z = softcap_logits(raw, config).to(wide);  // [Nv, vn]; may alias raw (no softcap, fp32)
      const at::Tensor new_max = at::maximum(r.running_max, at::amax(z, 1));
      const at::Tensor rescale = at::exp(r.running_max - new_max);  // [Nv]: 0 at the first chunk
      r.running_max = new_max;
      const auto [inside, column] = in_chunk(r.targets, v0, vn);
      const at::Tensor zero = at::zeros_like(r.target_logit);
      r.target_logit += at::where(inside, z.gather(1, column).squeeze(1), zero);
      if (backward) {
        if (slope.defined()) r.target_slope += at::where(inside, slope.gather(1, column).squeeze(1), zero);
        r.target_rows = at::where(inside.unsqueeze(1), w.index_select(0, column.squeeze(1)), r.target_rows);
      }
      z.sub_(new_max.unsqueeze(1)).exp_();  // exp(z - m), in place: the logits are not needed again
      r.sum_exp = r.sum_exp * rescale + z.sum(1);
      if (!backward) continue;
      if (slope.defined()) z.mul_(slope);
      // The target's column out of G (x - x: exactly 0; other rows + -0):
      // its softmax is near 1 for a confident model, and p_t W_t rounded
      // in the chunk's product would swamp (p_t - 1) W_t once W_t is
      // subtracted at the end; that term is formed in fp32 there instead.
      z.scatter_add_(1, column, -(z.gather(1, column) * inside.unsqueeze(1).to(wide)));
      r.grad_sum.mul_(rescale.unsqueeze(1)).add_(at::mm(z.to(raw.scalar_type()), w));
    }
  }
  for (size_t m = 0; m < n_micro; ++m) {
    Rows& r = mb[m];
    const at::Tensor lse = r.running_max + at::log(r.sum_exp);  // [Nv]
    results[m].loss_sum = (lse - r.target_logit).sum().item<double>();
    if (!backward) continue;
    // The target's d loss / d z = p_t - 1 = expm1(z_t - lse), exact where p_t is near 1.
    at::Tensor target_coef = at::expm1(r.target_logit - lse);  // [Nv]
    if (r.target_slope.defined()) target_coef.mul_(r.target_slope);
    at::Tensor& grad = r.grad_sum;  // becomes d loss / d rows, in place
    grad.mul_(at::exp(r.running_max - lse).unsqueeze(1))
        .add_(r.target_rows.to(wide).mul_(target_coef.unsqueeze(1)))
        .div_(loss_denominator);
    at::AutoGradMode grad_on(true);
    const at::Tensor x = hidden[m].detach().requires_grad_(true);
    const int64_t hsz = x.size(-1);
    const at::Tensor rows = model_norm(x, head.final_norm, config).reshape({-1, hsz}).index_select(0, r.valid);
    if (results[m].n_valid > 0) {
      rows.backward(grad.to(rows.scalar_type()));
      results[m].grad_hidden = x.grad();
    } else {
      results[m].grad_hidden = at::zeros_like(hidden[m]);
    }
    r = Rows();
  }
  return results;
}

// The chunked head of head_loss_backward and head_loss: one code path, so
// evaluation reports exactly the loss training optimises. With `backward`
// false nothing is recorded for autograd and grad_hidden stays undefined.
static HeadLossResult head_loss_chunked(const at::Tensor& hidden, const at::Tensor& labels, const HeadWeights& head,
                                        const ModelConfig& config, double loss_denominator, int64_t chunk_tokens,
                                        bool backward) {
  if (head.vocab_chunk > 0) return streamed_head_loss({hidden}, {labels}, head, config, loss_denominator, backward)[0];
  at::AutoGradMode grad_mode(backward);
  const int64_t hsz = hidden.size(-1);
  const at::Tensor x = backward ? hidden.detach().requires_grad_(true) : hidden;                  // [B, T, H]
  const at::Tensor normed = model_norm(x, head.final_norm, config).reshape({-1, hsz});  // [N, H]
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
    const at::Tensor logits = softcap_logits(at::linear(rows_leaf.narrow(0, start, n), head.lm_head), config).to(wide);  // [n, V]
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

std::vector<HeadLossResult> head_loss_backward_all(const std::vector<at::Tensor>& hidden,
                                                   const std::vector<at::Tensor>& labels, const HeadWeights& head,
                                                   const ModelConfig& config, double loss_denominator,
                                                   int64_t chunk_tokens) {
  if (head.vocab_chunk > 0) return streamed_head_loss(hidden, labels, head, config, loss_denominator, true);
  std::vector<HeadLossResult> out;
  for (size_t m = 0; m < hidden.size(); ++m) {
    out.push_back(head_loss_chunked(hidden[m], labels[m], head, config, loss_denominator, chunk_tokens, true));
  }
  return out;
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
  const at::Tensor normed = model_norm(hidden, head.final_norm, config);
  if (head.vocab_chunk <= 0) return softcap_logits(at::linear(normed, head.lm_head), config);
  std::vector<at::Tensor> parts;
  RowStream chunks(head.lm_head, head.vocab_chunk, normed.device());
  for (int64_t k = 0; k < chunks.n_chunks(); ++k) {
    parts.push_back(softcap_logits(at::linear(normed, chunks.next()), config));
  }
  return at::cat(parts, -1);
}

}  // namespace lema::engine
