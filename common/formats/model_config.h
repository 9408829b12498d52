// The configuration of a Llama-family model, as Hugging Face's config.json
// gives it (LlamaForCausalLM, MistralForCausalLM). Plain data; the parser
// and writer live in model_config.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/base/status.h"

namespace lema {

enum class RopeScalingType { kNone, kLinear, kLlama3 };

struct RopeScaling {
  RopeScalingType type = RopeScalingType::kNone;
  double factor = 1.0;
  // llama3 only
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string architecture = "LlamaForCausalLM";  // or MistralForCausalLM
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
  bool attention_bias = false;  // refused when true: Llama-family projections have no bias
  // Mistral's sliding-window attention span in tokens; 0 = none. Recorded,
  // not refused: attention equals full causal attention for sequences of at
  // most sliding_window tokens, so the engine must refuse longer sequences.
  int64_t sliding_window = 0;

  int64_t q_dim() const { return n_heads * head_dim; }    // rows of q_proj / cols of o_proj
  int64_t kv_dim() const { return n_kv_heads * head_dim; }  // rows of k_proj and v_proj
};

// Parses a config.json text. `source` names the file in error messages.
// Refuses architectures other than Llama/Mistral, biases, activations other
// than SiLU and rope_scaling types other than none/linear/llama3. Errors name
// `source` and the key.
Result<ModelConfig> parse_model_config(const std::string& json_text, const std::string& source);
Result<ModelConfig> load_model_config(const std::string& path);
// A config.json text that transformers' LlamaConfig accepts.
std::string model_config_to_json(const ModelConfig& config);

}  // namespace lema
