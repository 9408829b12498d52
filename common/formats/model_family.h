// The model families lema runs, as one table (llama.cpp keeps one per
// architecture the same way): the Hugging Face model_type and class that
// name a family, the tensors of its decoder layer, and the switches that the
// one decoder (engine/llama_model.h) reads. A new family is a row here, its
// config keys in model_config.cpp, and whatever new maths it brings in the
// decoder behind a switch.
//
// Plain data and functions; thread-safe.
#pragma once

#include <string>
#include <vector>

#include "common/formats/model_config.h"

namespace lema {

struct FamilyInfo {
  ModelFamily family;
  const char* model_type;    // config.json "model_type"
  const char* architecture;  // config.json "architectures"[0]
  const char* name;          // what `lema inspect` prints
  bool qk_norm;              // q_norm / k_norm per head before RoPE
  bool sandwich_norms;       // pre/post attention and feed-forward norms
  bool unit_offset_norm;     // RMSNorm scales by (1 + weight)
  bool scaled_embedding;     // embeddings times sqrt(hidden)
  bool qkv_bias;             // q/k/v projections carry a bias whatever attention_bias says
  bool fused_projections;    // qkv_proj = [q; k; v] and gate_up_proj = [gate; up] (Phi-3)
};

const FamilyInfo& family_info(ModelFamily family);
// nullptr when no row has this model_type / class.
const FamilyInfo* family_by_model_type(const std::string& model_type);
const FamilyInfo* family_by_architecture(const std::string& architecture);
// "llama (LlamaForCausalLM), mistral (MistralForCausalLM), ..." for errors.
std::string supported_families();
const std::vector<FamilyInfo>& all_families();

}  // namespace lema
