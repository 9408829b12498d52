#include "common/formats/model_layout.h"

#include "common/base/status.h"

namespace lema {

std::vector<std::string> layer_tensor_suffixes(const ModelConfig& c) {
  if (c.fused_projections()) {
    // Phi-3: q/k/v in one weight, gate/up in another (HF's names and rows).
    return {"input_layernorm.weight", "self_attn.qkv_proj.weight", "self_attn.o_proj.weight",
            "post_attention_layernorm.weight", "mlp.gate_up_proj.weight", "mlp.down_proj.weight"};
  }
  std::vector<std::string> s = {
      "input_layernorm.weight",  "self_attn.q_proj.weight", "self_attn.k_proj.weight",
      "self_attn.v_proj.weight", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
      "mlp.gate_proj.weight",    "mlp.up_proj.weight",      "mlp.down_proj.weight",
  };
  if (c.attention_bias) s.insert(s.end(), {"self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"});
  if (c.sandwich_norms()) s.insert(s.end(), {"pre_feedforward_layernorm.weight", "post_feedforward_layernorm.weight"});
  if (c.qk_norm()) s.insert(s.end(), {"self_attn.q_norm.weight", "self_attn.k_norm.weight"});
  return s;
}

std::string layer_tensor_name(int64_t layer, const std::string& suffix) {
  return "model.layers." + std::to_string(layer) + "." + suffix;
}

std::string layer_suffix_of(const std::string& name) {
  const std::string prefix = "model.layers.";
  if (name.compare(0, prefix.size(), prefix) != 0) return "";
  const size_t dot = name.find('.', prefix.size());
  return dot == std::string::npos ? "" : name.substr(dot + 1);
}

std::vector<int64_t> layer_tensor_shape(const ModelConfig& c, const std::string& s) {
  const int64_t h = c.hidden_size, f = c.intermediate_size;
  if (s == "input_layernorm.weight" || s == "post_attention_layernorm.weight" ||
      s == "pre_feedforward_layernorm.weight" || s == "post_feedforward_layernorm.weight")
    return {h};
  if (s == "self_attn.q_norm.weight" || s == "self_attn.k_norm.weight") return {c.head_dim};
  if (s == "self_attn.q_proj.bias") return {c.q_dim()};
  if (s == "self_attn.k_proj.bias" || s == "self_attn.v_proj.bias") return {c.kv_dim()};
  if (s == "self_attn.q_proj.weight") return {c.q_dim(), h};
  if (s == "self_attn.k_proj.weight" || s == "self_attn.v_proj.weight") return {c.kv_dim(), h};
  if (s == "self_attn.o_proj.weight") return {h, c.q_dim()};
  if (s == "self_attn.qkv_proj.weight") return {c.q_dim() + 2 * c.kv_dim(), h};  // [q; k; v] rows
  if (s == "mlp.gate_up_proj.weight") return {2 * f, h};                         // [gate; up] rows
  if (s == "mlp.gate_proj.weight" || s == "mlp.up_proj.weight") return {f, h};
  if (s == "mlp.down_proj.weight") return {h, f};
  LEMA_CHECK_MSG(false, "unknown layer tensor suffix " + s);
  return {};
}

std::vector<TensorSpec> model_tensor_specs(const ModelConfig& c) {
  std::vector<TensorSpec> out;
  out.push_back({kEmbedName, {c.vocab_size, c.hidden_size}});
  for (int64_t i = 0; i < c.n_layers; ++i) {
    for (const auto& s : layer_tensor_suffixes(c))
      out.push_back({layer_tensor_name(i, s), layer_tensor_shape(c, s)});
  }
  out.push_back({kFinalNormName, {c.hidden_size}});
  if (!c.tie_word_embeddings) out.push_back({kLmHeadName, {c.vocab_size, c.hidden_size}});
  return out;
}

std::string shape_to_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

}  // namespace lema
