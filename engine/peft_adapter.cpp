#include "engine/peft_adapter.h"
#include "engine/torch_types.h"

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <map>
#include <tuple>

#include "common/formats/dtype.h"
#include "common/base/file_util.h"
#include "common/formats/model_layout.h"
#include "common/formats/safetensors.h"

namespace lema::engine {
namespace {

Result<nlohmann::json> read_json_object(const std::string& path) {
  LEMA_ASSIGN_OR_RETURN(std::string text, read_file(path));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Status::invalid_argument(path + ": not a JSON object");
  return j;
}

// True when key `k` is absent, null, false, or an empty list/object/string.
bool empty_or_absent(const nlohmann::json& j, const char* k) {
  if (!j.contains(k)) return true;
  const auto& v = j[k];
  if (v.is_null()) return true;
  if (v.is_boolean()) return !v.get<bool>();
  if (v.is_array() || v.is_object() || v.is_string()) return v.empty();
  return false;
}

// Where a tensor of the adapter file belongs: (layer, target, is_b).
struct PairKey {
  int64_t layer;
  int target;
  bool is_b;
  bool operator<(const PairKey& o) const {
    return std::tie(layer, target, is_b) < std::tie(o.layer, o.target, o.is_b);
  }
};

bool consume(std::string& s, const std::string& prefix) {
  if (s.compare(0, prefix.size(), prefix) != 0) return false;
  s.erase(0, prefix.size());
  return true;
}

// Parses "base_model.model.model.layers.{i}.{module}.{proj}.lora_{A,B}[.<name>].weight".
bool parse_key(std::string s, PairKey& key) {
  if (!consume(s, "base_model.model.model.layers.")) return false;
  char* end = nullptr;
  const long long layer = std::strtoll(s.c_str(), &end, 10);
  if (end == s.c_str() || *end != '.' || layer < 0) return false;
  s.erase(0, static_cast<size_t>(end - s.c_str()) + 1);
  for (int t = 0; t < kNumLoraTargets; ++t) {
    const auto target = static_cast<LoraTarget>(t);
    std::string rest = s;
    if (!consume(rest, std::string(lora_target_module(target)) + "." + lora_target_name(target) + ".lora_")) continue;
    if (rest.empty() || (rest[0] != 'A' && rest[0] != 'B')) return false;
    key = {layer, t, rest[0] == 'B'};
    rest.erase(0, 1);
    if (rest == ".weight") return true;
    // PEFT's in-memory names carry the adapter name: ".default.weight".
    return rest.size() > 8 && rest[0] == '.' && rest.compare(rest.size() - 7, 7, ".weight") == 0 &&
           rest.find('.', 1) == rest.size() - 7;
  }
  return false;
}

}  // namespace

Result<LoraConfig> read_peft_config(const std::string& dir) {
  const std::string path = path_join(dir, "adapter_config.json");
  if (!path_exists(path)) return Status::not_found(path + ": missing (not a PEFT adapter directory?)");
  LEMA_ASSIGN_OR_RETURN(nlohmann::json j, read_json_object(path));
  LoraConfig c;
  try {
    const std::string peft_type = j.value("peft_type", std::string("LORA"));
    if (peft_type != "LORA") return Status::unsupported(path + ": peft_type \"" + peft_type + "\" (only LORA)");
    if (j.contains("task_type") && j["task_type"].is_string() && j["task_type"] != "CAUSAL_LM") {
      return Status::unsupported(path + ": task_type \"" + j["task_type"].get<std::string>() +
                                 "\" (only CAUSAL_LM)");
    }
    const std::string bias = j.value("bias", std::string("none"));
    if (bias != "none") return Status::unsupported(path + ": bias \"" + bias + "\" (lema trains no biases; only \"none\")");
    if (!empty_or_absent(j, "use_dora")) return Status::unsupported(path + ": use_dora (DoRA adapters are not supported)");
    if (!empty_or_absent(j, "modules_to_save")) {
      return Status::unsupported(path + ": modules_to_save " + j["modules_to_save"].dump() +
                                 " (fully trained extra modules are not supported)");
    }
    for (const char* k : {"rank_pattern", "alpha_pattern"}) {
      if (!empty_or_absent(j, k)) {
        return Status::unsupported(path + ": " + k + " " + j[k].dump() + " (per-module ranks/alphas are not supported)");
      }
    }
    if (!empty_or_absent(j, "layers_to_transform")) {
      return Status::unsupported(path + ": layers_to_transform (adapters on a subset of layers are not supported)");
    }
    if (!empty_or_absent(j, "fan_in_fan_out")) return Status::unsupported(path + ": fan_in_fan_out true");
    if (!j.contains("r")) return Status::invalid_argument(path + ": key \"r\" is missing");
    if (!j.contains("lora_alpha")) return Status::invalid_argument(path + ": key \"lora_alpha\" is missing");
    if (!j.contains("target_modules")) return Status::invalid_argument(path + ": key \"target_modules\" is missing");
    c.r = j.at("r").get<int64_t>();
    c.alpha = j.at("lora_alpha").get<double>();
    c.dropout = j.contains("lora_dropout") && j["lora_dropout"].is_number() ? j["lora_dropout"].get<double>() : 0.0;
    c.use_rslora = !empty_or_absent(j, "use_rslora");
    std::string targets;
    const auto& tm = j.at("target_modules");
    if (tm.is_string()) {
      targets = tm.get<std::string>();
      if (targets == "all-linear") targets = "all";
    } else {
      for (const auto& t : tm) targets += (targets.empty() ? "" : ",") + t.get<std::string>();
    }
    auto parsed = parse_lora_target_names(targets);
    if (!parsed.ok()) return parsed.status().with_context(path + ": target_modules");
    c.targets = std::move(parsed).value();
  } catch (const std::exception& e) {
    return Status::invalid_argument(path + ": " + e.what());
  }
  if (c.r < 1) return Status::invalid_argument(path + ": r must be >= 1, got " + std::to_string(c.r));
  return c;
}

Result<std::string> peft_base_model(const std::string& dir) {
  LEMA_ASSIGN_OR_RETURN(nlohmann::json j, read_json_object(path_join(dir, "adapter_config.json")));
  const auto it = j.find("base_model_name_or_path");
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

Result<std::unique_ptr<LoraAdapter>> load_peft_adapter(const std::string& dir, const ModelConfig& model,
                                                       at::ScalarType master_dtype, at::Device device) {
  LEMA_ASSIGN_OR_RETURN(LoraConfig config, read_peft_config(dir));
  const std::string path = path_join(dir, "adapter_model.safetensors");
  if (!path_exists(path)) {
    if (path_exists(path_join(dir, "adapter_model.bin"))) {
      return Status::unsupported(path_join(dir, "adapter_model.bin") +
                                 ": pickle adapters are not read; save with safe_serialization=True");
    }
    return Status::not_found(path + ": missing");
  }
  LEMA_ASSIGN_OR_RETURN(auto reader, SafetensorsReader::open(path));
  std::map<PairKey, const TensorInfo*> found;
  for (const TensorInfo& info : reader->tensors()) {
    PairKey key{};
    if (!parse_key(info.name, key)) {
      return Status::unsupported(path + ": tensor '" + info.name +
                                 "' is not a LoRA pair of a Llama projection (embedding/lm_head adapters are not supported)");
    }
    const auto target = static_cast<LoraTarget>(key.target);
    if (key.layer >= model.n_layers) {
      return Status::invalid_argument(path + ": tensor '" + info.name + "' is for layer " + std::to_string(key.layer) +
                                      " but the model has " + std::to_string(model.n_layers) + " layers");
    }
    if (!config.has_target(target)) {
      return Status::invalid_argument(path + ": tensor '" + info.name + "' targets " + lora_target_name(target) +
                                      ", which adapter_config.json target_modules does not list");
    }
    if (!found.emplace(key, &info).second) {
      return Status::invalid_argument(path + ": tensor '" + info.name + "' appears twice (with and without adapter name)");
    }
  }
  LEMA_RETURN_IF_ERROR(check_lora_targets(model, config.targets).with_context(path + ": target_modules"));
  try {
    auto adapter = std::make_unique<LoraAdapter>(LoraAdapter::init(model, config, 0, master_dtype, device));
    at::NoGradGuard no_grad;
    for (int64_t l = 0; l < model.n_layers; ++l) {
      for (LoraTarget target : config.targets) {
        const auto [out, in] = lora_target_shape(model, target);
        for (bool is_b : {false, true}) {
          const std::string name = "base_model.model.model.layers." + std::to_string(l) + "." +
                                   lora_target_module(target) + "." + lora_target_name(target) +
                                   (is_b ? ".lora_B.weight" : ".lora_A.weight");
          const auto it = found.find(PairKey{l, static_cast<int>(target), is_b});
          if (it == found.end()) return Status::invalid_argument(path + ": tensor '" + name + "' is missing");
          const TensorInfo& info = *it->second;
          const std::vector<int64_t> want = is_b ? std::vector<int64_t>{out, config.r} : std::vector<int64_t>{config.r, in};
          if (info.shape != want) {
            std::string why = "expected " + shape_to_string(want);
            if (info.shape.size() == 2 && (is_b ? info.shape[1] : info.shape[0]) != config.r) {
              why += " (rank " + std::to_string(is_b ? info.shape[1] : info.shape[0]) + " in the file, r = " +
                     std::to_string(config.r) + " in adapter_config.json)";
            } else {
              why += " for this model (an adapter for another model shape?)";
            }
            return Status::invalid_argument(path + ": tensor '" + info.name + "' has shape " +
                                            shape_to_string(info.shape) + ", " + why);
          }
          LEMA_ASSIGN_OR_RETURN(at::ScalarType st, scalar_type_of(info.dtype, path + ": tensor '" + info.name + "'"));
          const at::Tensor src = at::from_blob(const_cast<uint8_t*>(reader->data(info)), want,
                                               at::TensorOptions().dtype(st));
          at::Tensor& dst = is_b ? adapter->b(l, target) : adapter->a(l, target);
          dst.copy_(src.to(master_dtype));
        }
      }
    }
    return adapter;
  } catch (const std::exception& e) {
    return Status::internal(path + ": " + e.what());
  }
}

}  // namespace lema::engine
