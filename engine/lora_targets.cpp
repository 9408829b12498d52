#include "engine/lora_targets.h"

#include <sstream>

#include "common/formats/model_family.h"

namespace lema::engine {

namespace {

constexpr size_t kLlamaLayoutSize = 7;
const char* const kTargetNames[kNumLoraTargets] = {"q_proj",    "k_proj",    "v_proj",   "o_proj",      "gate_proj",
                                                   "up_proj",   "down_proj", "qkv_proj", "gate_up_proj"};

std::string names_of(const std::vector<LoraTarget>& targets) {
  std::string s = lora_targets_to_string(targets);
  return s + ",all";
}

// The names in `text` among `allowed` (canonical order), "all" = allowed.
// `family` names the layout in errors.
Result<std::vector<LoraTarget>> parse_among(const std::string& text, const std::vector<LoraTarget>& allowed,
                                            const std::string& family) {
  if (text == "all" || text == "all-linear") return allowed;
  bool seen[kNumLoraTargets] = {};
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    if (item.empty()) continue;
    int found = -1;
    for (LoraTarget t : allowed)
      if (item == kTargetNames[static_cast<int>(t)]) found = static_cast<int>(t);
    if (found < 0) {
      std::string why = "LoRA target '" + item + "' is not one of " + names_of(allowed);
      if (!family.empty()) {
        why += " (the projections of " + family + ")";
        // The default --targets names the Llama layout; say what to pass instead.
        if (allowed.size() != kLlamaLayoutSize) why += "; pass --targets with these names, e.g. qkv_proj,o_proj";
      }
      return Status::invalid_argument(why);
    }
    seen[found] = true;
  }
  std::vector<LoraTarget> out;
  for (LoraTarget t : allowed)
    if (seen[static_cast<int>(t)]) out.push_back(t);
  if (out.empty()) return Status::invalid_argument("LoRA targets: empty list '" + text + "'");
  return out;
}

const std::vector<LoraTarget> kLlamaLayout = {LoraTarget::kQ,    LoraTarget::kK,  LoraTarget::kV,   LoraTarget::kO,
                                              LoraTarget::kGate, LoraTarget::kUp, LoraTarget::kDown};
const std::vector<LoraTarget> kFusedLayout = {LoraTarget::kQkv, LoraTarget::kO, LoraTarget::kGateUp,
                                              LoraTarget::kDown};

}  // namespace

const char* lora_target_name(LoraTarget target) { return kTargetNames[static_cast<int>(target)]; }

const char* lora_target_module(LoraTarget target) {
  switch (target) {
    case LoraTarget::kQ:
    case LoraTarget::kK:
    case LoraTarget::kV:
    case LoraTarget::kO:
    case LoraTarget::kQkv: return "self_attn";
    default: return "mlp";
  }
}

std::vector<LoraTarget> family_lora_targets(const ModelConfig& model) {
  return model.fused_projections() ? kFusedLayout : kLlamaLayout;
}

Result<std::vector<LoraTarget>> parse_lora_targets(const std::string& text, const ModelConfig& model) {
  return parse_among(text, family_lora_targets(model), family_info(model.family).model_type);
}

Result<std::vector<LoraTarget>> parse_lora_target_names(const std::string& text) {
  if (text == "all" || text == "all-linear") return kLlamaLayout;
  std::vector<LoraTarget> every;
  for (int i = 0; i < kNumLoraTargets; ++i) every.push_back(static_cast<LoraTarget>(i));
  return parse_among(text, every, "");
}

Status check_lora_targets(const ModelConfig& model, const std::vector<LoraTarget>& targets) {
  const std::vector<LoraTarget> allowed = family_lora_targets(model);
  for (LoraTarget t : targets) {
    bool ok = false;
    for (LoraTarget a : allowed) ok = ok || a == t;
    if (!ok) {
      return Status::invalid_argument(std::string("LoRA target '") + lora_target_name(t) + "' is not a projection of " +
                                      family_info(model.family).model_type + " (its targets: " +
                                      lora_targets_to_string(allowed) + ")");
    }
  }
  return Status();
}

std::string lora_targets_to_string(const std::vector<LoraTarget>& targets) {
  std::string s;
  for (LoraTarget t : targets) {
    if (!s.empty()) s += ",";
    s += lora_target_name(t);
  }
  return s;
}

std::pair<int64_t, int64_t> lora_target_shape(const ModelConfig& c, LoraTarget target) {
  const int64_t h = c.hidden_size, q = c.q_dim(), kv = c.kv_dim(), i = c.intermediate_size;
  switch (target) {
    case LoraTarget::kQ: return {q, h};
    case LoraTarget::kK: return {kv, h};
    case LoraTarget::kV: return {kv, h};
    case LoraTarget::kO: return {h, q};
    case LoraTarget::kGate: return {i, h};
    case LoraTarget::kUp: return {i, h};
    case LoraTarget::kDown: return {h, i};
    case LoraTarget::kQkv: return {q + 2 * kv, h};
    case LoraTarget::kGateUp: return {2 * i, h};
  }
  return {0, 0};
}

}  // namespace lema::engine
