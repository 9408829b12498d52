// The Llama decoder as Hugging Face's LlamaForCausalLM computes it: RMSNorm
// in fp32 then cast back, RoPE (rotate_half, rope_theta, rope_scaling linear
// and llama3), grouped-query attention, causal attention, SiLU-gated MLP,
// final norm and lm_head (tied or not). Plain functions over weight views;
// nothing here owns weights (LayerSource does).
//
// Padding: sequences are right-padded. With right padding the causal mask
// alone gives every real token exactly HF's result (a real token never sees
// a later position); padded positions produce values that nothing reads,
// and their labels are -100. So attention takes no padding mask.
//
// Thread-safety: the functions are pure; concurrent calls are fine.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/formats/model_config.h"
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
  const at::Tensor& proj(LoraTarget target) const;
};

// Embedding, final norm and lm_head (the same tensor as embed when tied).
struct HeadWeights {
  at::Tensor embed;       // [V, H]
  at::Tensor final_norm;  // [H]
  at::Tensor lm_head;     // [V, H]
};

// HF names of a layer's tensors, in the order LayerWeights lists them:
// "model.layers.{i}.self_attn.q_proj.weight", ...
std::vector<std::string> layer_tensor_names(int64_t layer);
// Shapes matching layer_tensor_names().
std::vector<std::vector<int64_t>> layer_tensor_shapes(const ModelConfig& config);

// RoPE frequencies as HF computes them (float32, default/linear/llama3).
class Rope {
 public:
  explicit Rope(const ModelConfig& config);
  const at::Tensor& inv_freq() const { return inv_freq_; }  // [hd/2] float32, CPU
  // cos and sin for positions 0..T-1, computed in float32, cast to dtype.
  // -> pair of [T, hd]
  std::pair<at::Tensor, at::Tensor> cos_sin(int64_t seq_len, at::ScalarType dtype, at::Device device) const;

 private:
  at::Tensor inv_freq_;
};

// x: [..., H] -> [..., H]: weight * (x_fp32 * rsqrt(mean(x^2) + eps)).to(x.dtype)
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);
// x: [B, n, T, hd], cos/sin: [T, hd]
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);
// Causal attention. q: [B, nh, T, hd]; k, v: [B, nkv, T, hd] -> [B, nh, T, hd].
// SDPA on LibTorch >= 2, the eager formula (softmax in fp32) otherwise.
at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

// The per-call context of a decoder layer.
struct LayerContext {
  const ModelConfig* config = nullptr;
  at::Tensor cos, sin;        // [T, hd] in the compute dtype
  uint64_t dropout_seed = 0;  // per (step, micro-batch, layer); see mix_seed
};

// One decoder layer: x [B, T, H] -> [B, T, H]. Autograd follows grad mode.
at::Tensor decoder_layer_forward(const at::Tensor& x, const LayerWeights& w, const LayerLora& lora,
                                 const LayerContext& ctx);

// input_ids [B, T] int64 -> [B, T, H]
at::Tensor embed_tokens(const at::Tensor& input_ids, const HeadWeights& head);

// Shifts HF-style labels (unshifted, -100 ignored) to next-token targets:
// labels [B, T] -> targets [B, T] with targets[:, t] = labels[:, t+1], -100 last.
at::Tensor shift_labels(const at::Tensor& labels);

struct HeadLossResult {
  double loss_sum = 0.0;     // sum of cross-entropy over valid tokens
  int64_t n_valid = 0;       // tokens with a label
  at::Tensor grad_hidden;    // [B, T, H]: d(loss_sum / denominator) / d hidden
};

// Final norm, lm_head and cross-entropy (fp32 or wider) over the valid
// tokens only, `chunk_tokens` rows of logits at a time; backpropagates
// loss_sum / loss_denominator into the hidden states. hidden: [B, T, H],
// labels: [B, T] (unshifted).
HeadLossResult head_loss_backward(const at::Tensor& hidden, const at::Tensor& labels, const HeadWeights& head,
                                  const ModelConfig& config, double loss_denominator, int64_t chunk_tokens);

// The same head and cross-entropy without autograd (evaluation): loss_sum
// and n_valid only, grad_hidden undefined.
HeadLossResult head_loss(const at::Tensor& hidden, const at::Tensor& labels, const HeadWeights& head,
                         const ModelConfig& config, int64_t chunk_tokens);

// Logits for every position (evaluation and parity checks; small inputs).
// hidden [B, T, H] -> [B, T, V] in the compute dtype.
at::Tensor head_logits(const at::Tensor& hidden, const HeadWeights& head, const ModelConfig& config);

}  // namespace lema::engine
