// The decoder, written once for every family (common/formats/model_family.h),
// as Hugging Face computes each: RMSNorm in fp32 then cast back ((1 + w) for
// Gemma), RoPE (rotate_half, rope_theta, rope_scaling linear and llama3; a
// local base for Gemma 3's sliding layers), grouped-query attention with
// optional q/k/v bias (Qwen2), per-head q/k norms (Qwen3, Gemma 3), causal
// or sliding-window attention, soft-capping (Gemma 2), an optional KV cache
// for generation, SiLU- or tanh-GELU-gated MLP, Gemma's four norms per block
// and scaled embeddings, final norm and lm_head (tied or not). Plain
// functions over weight views; nothing here owns weights (LayerSource does).
//
// Padding: sequences are right-padded. With right padding the causal mask
// alone gives every real token exactly HF's result (a real token never sees
// a later position); padded positions produce values that nothing reads,
// and their labels are -100. So attention takes no padding mask. Packed
// rows (several examples in a row, MicroBatch::segment_ids) are the
// exception: they take a block-diagonal causal mask, built once per
// micro-batch (micro_batch_context).
//
// Thread-safety: the functions are pure; concurrent calls are fine.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/formats/model_config.h"
#include "engine/batch.h"
#include "engine/lora.h"

namespace lema::engine {

// One decoder layer's weights: views into one contiguous buffer per layer,
// in the compute dtype on the compute device.
struct LayerWeights {
  at::Tensor input_norm;  // [H]      input_layernorm.weight
  at::Tensor q_proj;      // [nh*hd, H]
  at::Tensor k_proj;      // [nkv*hd, H]
  at::Tensor v_proj;      // [nkv*hd, H]
  at::Tensor o_proj;      // [H, nh*hd]
  at::Tensor post_norm;   // [H]      post_attention_layernorm.weight
  at::Tensor gate_proj;   // [I, H]
  at::Tensor up_proj;     // [I, H]
  at::Tensor down_proj;   // [H, I]
  // The families' extras (undefined where the family has none).
  at::Tensor q_bias, k_bias, v_bias;   // [nh*hd], [nkv*hd] (Qwen2)
  at::Tensor pre_ffn_norm;             // [H] pre_feedforward_layernorm (Gemma)
  at::Tensor post_ffn_norm;            // [H] post_feedforward_layernorm (Gemma)
  at::Tensor q_norm, k_norm;           // [hd] (Qwen3, Gemma 3)
  // Phi-3 fuses (q_proj .. up_proj above stay undefined there):
  at::Tensor qkv_proj;                 // [nh*hd + 2*nkv*hd, H]: rows q, then k, then v
  at::Tensor gate_up_proj;             // [2*I, H]: rows gate, then up
  const at::Tensor& proj(LoraTarget target) const;
  // The bias of a projection, undefined when it has none.
  at::Tensor bias(LoraTarget target) const;
};

// A layer's tensors in layer_tensor_suffixes(config) order <-> LayerWeights:
// the one mapping every source and the full model use.
LayerWeights layer_weights_from(const ModelConfig& config, const std::vector<at::Tensor>& tensors);
std::vector<at::Tensor> layer_weights_list(const ModelConfig& config, const LayerWeights& w);

// Embedding, final norm and lm_head (the same tensor as embed when tied).
// A streamed head (vocab_chunk > 0) keeps embed and lm_head in host memory
// (pinned for a GPU): embedding rows are gathered on the host, so only the
// batch's rows move, and lm_head comes to the device vocab_chunk rows at a
// time. The final norm is always on the device.
struct HeadWeights {
  at::Tensor embed;       // [V, H]
  at::Tensor final_norm;  // [H]
  at::Tensor lm_head;     // [V, H]
  int64_t vocab_chunk = 0;  // > 0: embed and lm_head live on the host
};

// HF names of a layer's tensors, in layer_tensor_suffixes(config) order:
// "model.layers.{i}.self_attn.q_proj.weight", ...
std::vector<std::string> layer_tensor_names(const ModelConfig& config, int64_t layer);
// Shapes matching layer_tensor_names().
std::vector<std::vector<int64_t>> layer_tensor_shapes(const ModelConfig& config);

// RoPE frequencies as HF computes them (float32, default/linear/llama3/
// longrope) over the rotary dimensions (rd = config.rotary_dim()).
class Rope {
 public:
  // local: the table of Gemma 3's sliding layers (rope_local_base_freq, no scaling).
  explicit Rope(const ModelConfig& config, bool local = false);
  const at::Tensor& inv_freq() const { return inv_freq_; }  // [rd/2] float32, CPU
  // LongRoPE: a forward over seq_len positions takes the long factors
  // (transformers: max position + 1 > original_max_position_embeddings).
  bool long_context(int64_t seq_len) const { return long_from_ > 0 && seq_len > long_from_; }
  // cos and sin for positions 0..T-1, computed in float32 (times LongRoPE's
  // attention factor), cast to dtype; the long factors when long_context.
  // -> pair of [T, rd]
  std::pair<at::Tensor, at::Tensor> cos_sin(int64_t seq_len, at::ScalarType dtype, at::Device device,
                                            bool long_context = false) const;

 private:
  at::Tensor inv_freq_;       // [rd/2]; LongRoPE: with the short factors
  at::Tensor inv_freq_long_;  // [rd/2] LongRoPE's long factors; else undefined
  int64_t long_from_ = 0;     // LongRoPE: original_max_position_embeddings; else 0
  double attention_scaling_ = 1.0;
};

// x: [..., H] -> [..., H]: weight * (x_fp32 * rsqrt(mean(x^2) + eps)).to(x.dtype)
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);
// The family's norm: rms_norm, or Gemma's ((x_fp32 * rsqrt(...)) * (1 + w_fp32)).to(x.dtype).
at::Tensor model_norm(const at::Tensor& x, const at::Tensor& weight, const ModelConfig& config);
// x: [B, n, T, hd], cos/sin: [T, rd] with rd <= hd: the first rd dimensions
// rotate, the rest pass (partial_rotary_factor).
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);
// Causal attention. q: [B, nh, T, hd]; k, v: [B, nkv, T, hd] -> [B, nh, T, hd].
// SDPA on LibTorch >= 2, the eager formula (softmax in fp32) otherwise.
at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

// Attention in general. q: [B, nh, T, hd]; k, v: [B, nkv, S, hd].
// allowed: [B or 1, 1, T, S] bool (true = may attend), or undefined for
// causal attention over S == T positions, limited to the last `window`
// positions when window > 0. scale multiplies q.k; softcap > 0 applies
// tanh(s / softcap) * softcap to the scores (Gemma 2; eager only).
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale, double softcap,
                     const at::Tensor& allowed, int64_t window);

// Keys and values of one layer for generation: written at the step's
// offset, read over [0, offset + T).
struct KvCache {
  at::Tensor k;  // [B, nkv, Tmax, hd]
  at::Tensor v;  // [B, nkv, Tmax, hd]
};

// The per-call context of a decoder layer.
struct LayerContext {
  const ModelConfig* config = nullptr;
  int64_t layer = 0;          // which layer runs: sliding or global, which RoPE table
  at::Tensor cos, sin;        // [T, rd] (or [B, 1, T, rd] per row) in the compute dtype
  // Gemma 3's sliding layers' table; undefined: cos/sin serve every layer.
  at::Tensor cos_local, sin_local;
  uint64_t dropout_seed = 0;  // per (step, micro-batch, layer); see mix_seed
  // Generation: the layer appends its keys/values to *cache at cache_offset
  // and attends over cache[0, cache_offset + T) where `allowed` (global
  // layers) or `allowed_local` (sliding layers) says: [B, 1, T, S] bool.
  // Without a cache, a defined `allowed` replaces the causal mask
  // (packed rows: S == T).
  KvCache* cache = nullptr;
  int64_t cache_offset = 0;
  at::Tensor allowed, allowed_local;
};

// The context of a plain forward over T positions 0..T-1 (training, eval):
// the RoPE tables the family needs, in dtype on device. LongRoPE picks its
// list by rope_context_len (0: seq_len), the length of the forward that
// transformers would run (the generator builds tables longer than one step).
LayerContext make_layer_context(const ModelConfig& config, int64_t seq_len, at::ScalarType dtype, at::Device device,
                                int64_t rope_context_len = 0);

// The context of a training forward over one micro-batch: make_layer_context
// over its T positions, or for packed rows (segment_ids defined) the RoPE
// tables gathered at each token's position ([B, 1, T, rd]; LongRoPE picks
// its list by the longest example, max position + 1, as transformers does
// with position_ids) and `allowed` = same example and not later
// ([B, 1, T, T]; `allowed_local` also within the sliding window), so each
// example computes exactly what it computes alone in a row.
LayerContext micro_batch_context(const ModelConfig& config, const MicroBatch& mb, at::ScalarType dtype,
                                 at::Device device);

// One decoder layer: x [B, T, H] -> [B, T, H]. Autograd follows grad mode.
at::Tensor decoder_layer_forward(const at::Tensor& x, const LayerWeights& w, const LayerLora& lora,
                                 const LayerContext& ctx);

// input_ids [B, T] int64 -> [B, T, H] (times sqrt(H) in the compute dtype for Gemma)
at::Tensor embed_tokens(const at::Tensor& input_ids, const HeadWeights& head, const ModelConfig& config);

// Shifts HF-style labels (unshifted, -100 ignored) to next-token targets:
// labels [B, T] -> targets [B, T] with targets[:, t] = labels[:, t+1], -100 last.
at::Tensor shift_labels(const at::Tensor& labels);

struct HeadLossResult {
  double loss_sum = 0.0;     // sum of cross-entropy over valid tokens
  int64_t n_valid = 0;       // tokens with a label
  at::Tensor grad_hidden;    // [B, T, H]: d(loss_sum / denominator) / d hidden
};

// Final norm, lm_head and cross-entropy (fp32 or wider) over the valid
// tokens only, `chunk_tokens` rows of logits at a time (a streamed head:
// every row at once, head.vocab_chunk columns at a time in one pass: the
// log-sum-exp and the fp32 gradient accumulated together over the chunks);
// backpropagates loss_sum / loss_denominator into the hidden states.
// hidden: [B, T, H], labels: [B, T] (unshifted).
HeadLossResult head_loss_backward(const at::Tensor& hidden, const at::Tensor& labels, const HeadWeights& head,
                                  const ModelConfig& config, double loss_denominator, int64_t chunk_tokens);

// head_loss_backward for every micro-batch of a step; a streamed head
// (vocab_chunk > 0) moves each lm_head chunk to the device once for all of
// them.
std::vector<HeadLossResult> head_loss_backward_all(const std::vector<at::Tensor>& hidden,
                                                   const std::vector<at::Tensor>& labels, const HeadWeights& head,
                                                   const ModelConfig& config, double loss_denominator,
                                                   int64_t chunk_tokens);

// The same head and cross-entropy without autograd (evaluation): loss_sum
// and n_valid only, grad_hidden undefined.
HeadLossResult head_loss(const at::Tensor& hidden, const at::Tensor& labels, const HeadWeights& head,
                         const ModelConfig& config, int64_t chunk_tokens);

// Logits for every position (evaluation and parity checks; small inputs).
// hidden [B, T, H] -> [B, T, V] in the compute dtype.
at::Tensor head_logits(const at::Tensor& hidden, const HeadWeights& head, const ModelConfig& config);

}  // namespace lema::engine
