// The projections LoRA adapts, without LibTorch (the memory planner counts
// them too). Each family declares its set, named as PEFT names the modules:
// q/k/v/o/gate/up/down for the Llama layout, qkv_proj/o_proj/gate_up_proj/
// down_proj where the family fuses projections (Phi-3). A LoRA on a fused
// weight is one A/B pair over the whole fused output, as PEFT builds it.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/base/status.h"
#include "common/formats/model_config.h"

namespace lema::engine {

enum class LoraTarget { kQ = 0, kK, kV, kO, kGate, kUp, kDown, kQkv, kGateUp };
// Every target of every family; a family's layer has some of them.
constexpr int kNumLoraTargets = 9;

// "q_proj", "qkv_proj", "gate_up_proj", ...
const char* lora_target_name(LoraTarget target);
// "self_attn" or "mlp": the HF module that holds the projection.
const char* lora_target_module(LoraTarget target);
// The projections of the family's decoder layer, in PEFT's order.
std::vector<LoraTarget> family_lora_targets(const ModelConfig& model);
// Parses "q_proj,v_proj" or "all" (every projection of the model's family).
// A name of another family's layout is refused naming the family's names
// (Phi-3 fuses q/k/v: a LoRA on q alone is not a PEFT adapter of its layer).
Result<std::vector<LoraTarget>> parse_lora_targets(const std::string& text, const ModelConfig& model);
// Without a model (adapter configs, option checks): any family's names;
// "all" is the Llama layout's seven. check_lora_targets judges the result
// once the model is known.
Result<std::vector<LoraTarget>> parse_lora_target_names(const std::string& text);
// OK when every target is a projection of the model's family.
Status check_lora_targets(const ModelConfig& model, const std::vector<LoraTarget>& targets);
std::string lora_targets_to_string(const std::vector<LoraTarget>& targets);
// [out, in] of the base projection (fused: the whole fused output).
std::pair<int64_t, int64_t> lora_target_shape(const ModelConfig& config, LoraTarget target);

}  // namespace lema::engine
