// The configuration of a decoder-only model as Hugging Face's config.json
// gives it, for the families lema runs (ModelFamily). Plain data; the parser
// and writer live in model_config.cpp, the per-family table (what each
// family's decoder does differently) in model_family.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/base/status.h"

namespace lema {

enum class RopeScalingType { kNone, kLinear, kLlama3, kLongrope };

// The families lema runs. Each is a row of the table in model_family.cpp:
// the HF model_type and class, and the switches of the one decoder.
enum class ModelFamily { kLlama, kMistral, kQwen2, kQwen3, kGemma2, kGemma3, kPhi3 };

struct RopeScaling {
  RopeScalingType type = RopeScalingType::kNone;
  double factor = 1.0;
  // llama3 only
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  // llama3 and longrope
  int64_t original_max_position_embeddings = 8192;
  // longrope (Phi-3, older name "su"): one factor per rotary dimension pair
  // (rotary_dim / 2 each) dividing the frequencies; the short list serves a
  // sequence of at most original_max_position_embeddings positions, the long
  // one a longer sequence (transformers picks per forward by its length).
  std::vector<double> short_factor, long_factor;
  // longrope: the scale of cos and sin; 0 = derived as transformers does,
  // sqrt(1 + ln(factor) / ln(original_max)) for factor > 1, where factor is
  // `factor` when the config gives it, else max_position / original_max.
  double attention_factor = 0.0;
  bool factor_given = false;  // longrope: "factor" was in the config (kept on write)
};

struct ModelConfig {
  ModelFamily family = ModelFamily::kLlama;
  std::string architecture = "LlamaForCausalLM";  // the HF class (architectures[0])
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t n_layers = 0;     // num_hidden_layers
  int64_t n_heads = 0;      // num_attention_heads
  int64_t n_kv_heads = 0;   // num_key_value_heads (== n_heads without GQA)
  int64_t head_dim = 0;     // hidden_size / n_heads unless given
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  int64_t vocab_size = 0;
  bool tie_word_embeddings = false;
  int64_t max_position_embeddings = 2048;
  int64_t bos_token_id = 1;
  std::vector<int64_t> eos_token_ids = {2};  // config.json allows an int or a list
  int64_t pad_token_id = -1;                 // -1: none
  std::string torch_dtype = "float32";       // float32 | float16 | bfloat16
  double initializer_range = 0.02;
  // Bias on q/k/v (Qwen2; Llama with attention_bias). The bias is frozen;
  // LoRA adapts the weights only, as PEFT does.
  bool attention_bias = false;
  // Sliding-window attention: a query at position i sees keys (i - window, i].
  // 0 = none. Which layers slide: every layer (Mistral, Qwen2 with
  // use_sliding_window from layer max_window_layers on), or the layers that
  // are not every sliding_window_pattern-th one (Gemma 3); layer_types, when
  // the config lists it, decides per layer.
  int64_t sliding_window = 0;
  std::vector<bool> layer_sliding;  // [n_layers], filled by the parser; empty = none slide
  // Gemma 3: RoPE base of the sliding layers (the global ones use rope_theta).
  double rope_local_base_freq = 0.0;
  // Gemma: attention scale query_pre_attn_scalar^-0.5 instead of head_dim^-0.5.
  double query_pre_attn_scalar = 0.0;  // 0: head_dim
  // Gemma 2: tanh soft-capping of attention scores and final logits; 0 = off.
  double attn_logit_softcapping = 0.0;
  double final_logit_softcapping = 0.0;
  // The activation of the gated MLP: "silu" (Llama, Qwen) or
  // "gelu_pytorch_tanh" (Gemma).
  std::string hidden_act = "silu";

  // The share of each head that RoPE rotates (Phi-4-mini: 0.75); the rest
  // passes through unrotated, as transformers' Phi3 does.
  double partial_rotary_factor = 1.0;
  int64_t rotary_dim() const { return static_cast<int64_t>(static_cast<double>(head_dim) * partial_rotary_factor); }

  // Switches derived from the family (model_family.cpp).
  bool qk_norm() const;          // RMSNorm per head on q and k before RoPE (Qwen3, Gemma 3)
  bool sandwich_norms() const;   // four norms per block (Gemma)
  bool unit_offset_norm() const; // RMSNorm scales by (1 + weight) (Gemma)
  bool scaled_embedding() const; // embeddings times sqrt(hidden) (Gemma)
  bool fused_projections() const; // qkv_proj and gate_up_proj, one weight each (Phi-3)
  bool is_sliding(int64_t layer) const {
    return sliding_window > 0 && layer >= 0 && static_cast<size_t>(layer) < layer_sliding.size() &&
           layer_sliding[static_cast<size_t>(layer)];
  }
  double attention_scale() const;  // the factor on q.k

  int64_t q_dim() const { return n_heads * head_dim; }    // rows of q_proj / cols of o_proj
  int64_t kv_dim() const { return n_kv_heads * head_dim; }  // rows of k_proj and v_proj
};

// Parses a config.json text. `source` names the file in error messages.
// Refuses model types and architectures not in the family table, and any key
// whose value asks for something the engine does not do (MLP biases, another
// activation, a rope_scaling type other than none/linear/llama3/longrope, MoE...), with
// the key and what is supported. Errors name `source` and the key.
Result<ModelConfig> parse_model_config(const std::string& json_text, const std::string& source);
Result<ModelConfig> load_model_config(const std::string& path);
// A config.json text that transformers' config class of the family accepts
// (model_type and the family's keys kept).
std::string model_config_to_json(const ModelConfig& config);

}  // namespace lema
