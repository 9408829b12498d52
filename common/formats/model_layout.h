// The tensors of a model of any family lema runs: Hugging Face names,
// shapes from the config, and the fixed order lema stores them in (the layer
// file order): Llama's nine layer tensors first, then the family's extras.
// Plain functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/formats/model_config.h"

namespace lema {

// One expected tensor: full HF name and shape.
struct TensorSpec {
  std::string name;            // "model.layers.3.self_attn.q_proj.weight"
  std::vector<int64_t> shape;  // e.g. [q_dim, hidden]
};

constexpr const char* kEmbedName = "model.embed_tokens.weight";  // [vocab, hidden]
constexpr const char* kFinalNormName = "model.norm.weight";      // [hidden]
constexpr const char* kLmHeadName = "lm_head.weight";            // [vocab, hidden]

// Suffixes of one decoder layer's tensors in storage order:
// input_layernorm, q, k, v, o, post_attention_layernorm, gate, up, down,
// then q/k/v biases (Qwen2), pre/post feed-forward norms (Gemma), q_norm and
// k_norm (Qwen3, Gemma 3).
std::vector<std::string> layer_tensor_suffixes(const ModelConfig& config);
// "model.layers.{layer}." + suffix
std::string layer_tensor_name(int64_t layer, const std::string& suffix);
// The inverse: "self_attn.q_proj.weight" of "model.layers.3.self_attn.q_proj.weight";
// "" for a name outside the layers.
std::string layer_suffix_of(const std::string& name);
// Shape of a layer tensor given its suffix. REQUIRES: suffix is one of layer_tensor_suffixes(config).
std::vector<int64_t> layer_tensor_shape(const ModelConfig& config, const std::string& suffix);
// Every tensor of the model in storage order: embed, layer 0..N-1, norm, then
// lm_head unless config.tie_word_embeddings.
std::vector<TensorSpec> model_tensor_specs(const ModelConfig& config);

// "[4096, 11008]"
std::string shape_to_string(const std::vector<int64_t>& shape);

}  // namespace lema
