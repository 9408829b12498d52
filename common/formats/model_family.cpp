#include "common/formats/model_family.h"

#include <cmath>

namespace lema {

const std::vector<FamilyInfo>& all_families() {
  // family, model_type, class, name, qk_norm, sandwich, 1+w norm, scaled embed, qkv bias, fused qkv/gate_up
  static const std::vector<FamilyInfo> kFamilies = {
      {ModelFamily::kLlama, "llama", "LlamaForCausalLM", "Llama", false, false, false, false, false, false},
      {ModelFamily::kMistral, "mistral", "MistralForCausalLM", "Mistral", false, false, false, false, false, false},
      {ModelFamily::kQwen2, "qwen2", "Qwen2ForCausalLM", "Qwen2", false, false, false, false, true, false},
      {ModelFamily::kQwen3, "qwen3", "Qwen3ForCausalLM", "Qwen3", true, false, false, false, false, false},
      {ModelFamily::kGemma2, "gemma2", "Gemma2ForCausalLM", "Gemma 2", false, true, true, true, false, false},
      {ModelFamily::kGemma3, "gemma3_text", "Gemma3ForCausalLM", "Gemma 3", true, true, true, true, false, false},
      {ModelFamily::kPhi3, "phi3", "Phi3ForCausalLM", "Phi-3", false, false, false, false, false, true},
  };
  return kFamilies;
}

const FamilyInfo& family_info(ModelFamily family) {
  for (const FamilyInfo& f : all_families())
    if (f.family == family) return f;
  return all_families().front();
}

const FamilyInfo* family_by_model_type(const std::string& model_type) {
  for (const FamilyInfo& f : all_families())
    if (model_type == f.model_type) return &f;
  return nullptr;
}

const FamilyInfo* family_by_architecture(const std::string& architecture) {
  for (const FamilyInfo& f : all_families())
    if (architecture == f.architecture) return &f;
  return nullptr;
}

std::string supported_families() {
  std::string s;
  for (const FamilyInfo& f : all_families()) {
    if (!s.empty()) s += ", ";
    s += std::string(f.model_type) + " (" + f.architecture + ")";
  }
  return s;
}

// ModelConfig's derived switches read the table, so no caller tests the
// family by name.
bool ModelConfig::qk_norm() const { return family_info(family).qk_norm; }
bool ModelConfig::sandwich_norms() const { return family_info(family).sandwich_norms; }
bool ModelConfig::unit_offset_norm() const { return family_info(family).unit_offset_norm; }
bool ModelConfig::scaled_embedding() const { return family_info(family).scaled_embedding; }
bool ModelConfig::fused_projections() const { return family_info(family).fused_projections; }
double ModelConfig::attention_scale() const {
  return 1.0 / std::sqrt(query_pre_attn_scalar > 0 ? query_pre_attn_scalar : static_cast<double>(head_dim));
}

}  // namespace lema
