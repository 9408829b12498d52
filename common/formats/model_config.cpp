#include "common/formats/model_config.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "common/base/file_util.h"

namespace lema {

using json = nlohmann::json;

namespace {

constexpr const char* kSupported =
    "supported: LlamaForCausalLM and MistralForCausalLM (Llama 1/2/3, Mistral, TinyLlama) with "
    "safetensors weights";
// Bounds that keep every shape product far from int64 overflow.
constexpr int64_t kMaxDim = 1 << 20;
constexpr int64_t kMaxVocab = 1 << 24;

class ConfigParser {
 public:
  ConfigParser(const json& root, const std::string& source, const std::string& prefix = "")
      : root_(root), source_(source), prefix_(prefix) {}

  Status error(const std::string& key, const std::string& what) const {
    return Status::invalid_argument(source_ + ": key '" + prefix_ + key + "': " + what);
  }

  // Required positive integer in [1, max].
  Status get_int(const std::string& key, int64_t max, int64_t* out, bool required = true) const {
    auto it = root_.find(key);
    if (it == root_.end() || it->is_null()) {
      if (required) return error(key, "missing");
      return Status();
    }
    if (!it->is_number_integer()) return error(key, "expected an integer, got " + it->dump());
    int64_t v = it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(max)
                    ? max + 1
                    : it->get<int64_t>();
    if (v < 1 || v > max) {
      return error(key, "value " + it->dump() + " out of range [1, " + std::to_string(max) + "]");
    }
    *out = v;
    return Status();
  }

  Status get_double(const std::string& key, double* out) const {
    auto it = root_.find(key);
    if (it == root_.end() || it->is_null()) return Status();
    if (!it->is_number()) return error(key, "expected a number, got " + it->dump());
    double v = it->get<double>();
    if (!std::isfinite(v) || v <= 0) return error(key, "expected a positive number, got " + it->dump());
    *out = v;
    return Status();
  }

  Status get_bool(const std::string& key, bool* out) const {
    auto it = root_.find(key);
    if (it == root_.end() || it->is_null()) return Status();
    if (!it->is_boolean()) return error(key, "expected true or false, got " + it->dump());
    *out = it->get<bool>();
    return Status();
  }

  // A token id: a non-negative integer or null (-> -1).
  Status get_token_id(const json& v, const std::string& key, int64_t* out) const {
    if (v.is_null()) {
      *out = -1;
      return Status();
    }
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= kMaxVocab) {
      return error(key, "expected a token id, got " + v.dump());
    }
    *out = v.get<int64_t>();
    return Status();
  }

  Status architecture(ModelConfig* c) const {
    std::string arch;
    auto a = root_.find("architectures");
    if (a != root_.end() && !a->is_null()) {
      if (!a->is_array() || a->size() != 1 || !(*a)[0].is_string()) {
        return error("architectures", "expected a list of one name, got " + a->dump());
      }
      arch = (*a)[0].get<std::string>();
    } else {
      auto mt = root_.find("model_type");
      std::string model_type = mt != root_.end() && mt->is_string() ? mt->get<std::string>() : "";
      if (model_type == "llama")
        arch = "LlamaForCausalLM";
      else if (model_type == "mistral")
        arch = "MistralForCausalLM";
      else
        return error("architectures",
                     std::string("missing, and model_type is not llama or mistral; ") + kSupported);
    }
    if (arch != "LlamaForCausalLM" && arch != "MistralForCausalLM") {
      return Status::unsupported(source_ + ": architecture '" + arch + "' is not supported; " + kSupported);
    }
    c->architecture = arch;
    return Status();
  }

  // RoPE settings come in two spellings: top-level rope_theta and
  // rope_scaling (transformers 4.x), or one rope_parameters object holding
  // rope_theta and the scaling (transformers 5 writes only this one).
  Status rope(ModelConfig* c) const {
    LEMA_RETURN_IF_ERROR(get_double("rope_theta", &c->rope_theta));
    LEMA_RETURN_IF_ERROR(rope_scaling_object("rope_scaling", c));
    auto it = root_.find("rope_parameters");
    if (it == root_.end() || it->is_null()) return Status();
    if (!it->is_object()) return error("rope_parameters", "expected an object or null, got " + it->dump());
    ConfigParser sub(*it, source_, "rope_parameters.");
    LEMA_RETURN_IF_ERROR(sub.get_double("rope_theta", &c->rope_theta));
    c->rope_scaling = RopeScaling{};
    return rope_scaling_object("rope_parameters", c);
  }

 private:
  Status rope_scaling_object(const char* key, ModelConfig* c) const {
    auto it = root_.find(key);
    if (it == root_.end() || it->is_null()) return Status();
    if (!it->is_object()) return error(key, "expected an object or null, got " + it->dump());
    std::string type;
    for (const char* k : {"rope_type", "type"}) {
      auto t = it->find(k);
      if (t != it->end() && t->is_string()) {
        type = t->get<std::string>();
        break;
      }
    }
    RopeScaling& rs = c->rope_scaling;
    // rope_parameters always exists in transformers 5, with no type meaning none.
    if (type == "default" || (type.empty() && std::string(key) == "rope_parameters")) return Status();
    const std::string k = key;
    if (type != "linear" && type != "llama3") {
      return Status::unsupported(source_ + ": key '" + k + "': type '" + type +
                                 "' is not supported (supported: none, linear, llama3)");
    }
    rs.type = type == "linear" ? RopeScalingType::kLinear : RopeScalingType::kLlama3;
    ConfigParser sub(*it, source_, k + ".");
    if (it->find("factor") == it->end()) return error(k + ".factor", "missing");
    LEMA_RETURN_IF_ERROR(sub.get_double("factor", &rs.factor));
    if (rs.type == RopeScalingType::kLlama3) {
      LEMA_RETURN_IF_ERROR(sub.get_double("low_freq_factor", &rs.low_freq_factor));
      LEMA_RETURN_IF_ERROR(sub.get_double("high_freq_factor", &rs.high_freq_factor));
      LEMA_RETURN_IF_ERROR(sub.get_int("original_max_position_embeddings", kMaxDim * 64,
                                       &rs.original_max_position_embeddings));
      if (rs.high_freq_factor <= rs.low_freq_factor) {
        return error(k, "high_freq_factor must exceed low_freq_factor");
      }
    }
    return Status();
  }

  const json& root_;
  std::string source_;
  std::string prefix_;  // "rope_scaling." or "rope_parameters." for nested keys
};

}  // namespace

Result<ModelConfig> parse_model_config(const std::string& json_text, const std::string& source) {
  json root;
  try {
    root = json::parse(json_text);
  } catch (const json::exception& e) {
    return Status::invalid_argument(source + ": not valid JSON: " + e.what());
  }
  if (!root.is_object()) return Status::invalid_argument(source + ": not a JSON object");
  try {
    ModelConfig c;
    ConfigParser p(root, source);
    LEMA_RETURN_IF_ERROR(p.architecture(&c));
    LEMA_RETURN_IF_ERROR(p.get_int("hidden_size", kMaxDim, &c.hidden_size));
    LEMA_RETURN_IF_ERROR(p.get_int("intermediate_size", kMaxDim, &c.intermediate_size));
    LEMA_RETURN_IF_ERROR(p.get_int("num_hidden_layers", 4096, &c.n_layers));
    LEMA_RETURN_IF_ERROR(p.get_int("num_attention_heads", 4096, &c.n_heads));
    c.n_kv_heads = c.n_heads;
    LEMA_RETURN_IF_ERROR(p.get_int("num_key_value_heads", 4096, &c.n_kv_heads, false));
    if (c.n_heads % c.n_kv_heads != 0) {
      return p.error(
          "num_key_value_heads",
          std::to_string(c.n_kv_heads) + " does not divide num_attention_heads " + std::to_string(c.n_heads));
    }
    c.head_dim = 0;
    LEMA_RETURN_IF_ERROR(p.get_int("head_dim", 4096, &c.head_dim, false));
    if (c.head_dim == 0) {
      if (c.hidden_size % c.n_heads != 0) {
        return p.error("hidden_size", "not divisible by num_attention_heads and no head_dim given");
      }
      c.head_dim = c.hidden_size / c.n_heads;
    }
    if (c.head_dim % 2 != 0) return p.error("head_dim", "must be even for rotary embeddings");
    LEMA_RETURN_IF_ERROR(p.get_double("rms_norm_eps", &c.rms_norm_eps));
    LEMA_RETURN_IF_ERROR(p.rope(&c));
    LEMA_RETURN_IF_ERROR(p.get_int("vocab_size", kMaxVocab, &c.vocab_size));
    LEMA_RETURN_IF_ERROR(p.get_bool("tie_word_embeddings", &c.tie_word_embeddings));
    LEMA_RETURN_IF_ERROR(
        p.get_int("max_position_embeddings", kMaxDim * 64, &c.max_position_embeddings, false));
    LEMA_RETURN_IF_ERROR(p.get_double("initializer_range", &c.initializer_range));

    if (auto it = root.find("bos_token_id"); it != root.end()) {
      LEMA_RETURN_IF_ERROR(p.get_token_id(*it, "bos_token_id", &c.bos_token_id));
    }
    if (auto it = root.find("eos_token_id"); it != root.end()) {
      c.eos_token_ids.clear();
      if (it->is_array()) {
        for (const json& v : *it) {
          int64_t id;
          LEMA_RETURN_IF_ERROR(p.get_token_id(v, "eos_token_id", &id));
          if (id >= 0) c.eos_token_ids.push_back(id);
        }
      } else {
        int64_t id;
        LEMA_RETURN_IF_ERROR(p.get_token_id(*it, "eos_token_id", &id));
        if (id >= 0) c.eos_token_ids.push_back(id);
      }
    }
    if (auto it = root.find("pad_token_id"); it != root.end()) {
      LEMA_RETURN_IF_ERROR(p.get_token_id(*it, "pad_token_id", &c.pad_token_id));
    }
    // transformers >= 4.56 writes "dtype"; older versions "torch_dtype".
    for (const char* key : {"torch_dtype", "dtype"}) {
      auto it = root.find(key);
      if (it == root.end() || it->is_null()) continue;
      if (!it->is_string()) return p.error(key, "expected a string");
      std::string d = it->get<std::string>();
      if (d != "float32" && d != "float16" && d != "bfloat16") {
        return p.error(key, "'" + d + "' is not one of float32, float16, bfloat16");
      }
      c.torch_dtype = d;
      break;
    }

    LEMA_RETURN_IF_ERROR(p.get_bool("attention_bias", &c.attention_bias));
    if (c.attention_bias) {
      return Status::unsupported(source +
                                 ": key 'attention_bias': true is not supported (Llama-family "
                                 "projections have no bias)");
    }
    bool mlp_bias = false;
    LEMA_RETURN_IF_ERROR(p.get_bool("mlp_bias", &mlp_bias));
    if (mlp_bias) return Status::unsupported(source + ": key 'mlp_bias': true is not supported");
    if (auto it = root.find("hidden_act"); it != root.end() && !it->is_null()) {
      if (!it->is_string() || (it->get<std::string>() != "silu" && it->get<std::string>() != "swish")) {
        return Status::unsupported(source + ": key 'hidden_act': " + it->dump() +
                                   " is not supported (only silu)");
      }
    }
    if (auto it = root.find("sliding_window"); it != root.end() && !it->is_null()) {
      LEMA_RETURN_IF_ERROR(p.get_int("sliding_window", kMaxDim * 64, &c.sliding_window));
      // A window that covers every position is plain causal attention.
      if (c.sliding_window >= c.max_position_embeddings) c.sliding_window = 0;
    }
    return c;
  } catch (const json::exception& e) {
    return Status::invalid_argument(source + ": unexpected value: " + e.what());
  }
}

Result<ModelConfig> load_model_config(const std::string& path) {
  LEMA_ASSIGN_OR_RETURN(std::string text, read_file(path));
  return parse_model_config(text, path);
}

std::string model_config_to_json(const ModelConfig& c) {
  nlohmann::ordered_json j;
  bool mistral = c.architecture == "MistralForCausalLM";
  j["architectures"] = {c.architecture};
  j["model_type"] = mistral ? "mistral" : "llama";
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.n_layers;
  j["num_attention_heads"] = c.n_heads;
  j["num_key_value_heads"] = c.n_kv_heads;
  j["head_dim"] = c.head_dim;
  j["hidden_act"] = "silu";
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  if (c.rope_scaling.type == RopeScalingType::kNone) {
    j["rope_scaling"] = nullptr;
  } else {
    nlohmann::ordered_json rs;
    rs["rope_type"] = c.rope_scaling.type == RopeScalingType::kLinear ? "linear" : "llama3";
    rs["factor"] = c.rope_scaling.factor;
    if (c.rope_scaling.type == RopeScalingType::kLlama3) {
      rs["low_freq_factor"] = c.rope_scaling.low_freq_factor;
      rs["high_freq_factor"] = c.rope_scaling.high_freq_factor;
      rs["original_max_position_embeddings"] = c.rope_scaling.original_max_position_embeddings;
    }
    j["rope_scaling"] = rs;
  }
  j["vocab_size"] = c.vocab_size;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["bos_token_id"] = c.bos_token_id >= 0 ? nlohmann::ordered_json(c.bos_token_id) : nullptr;
  if (c.eos_token_ids.size() == 1)
    j["eos_token_id"] = c.eos_token_ids[0];
  else if (c.eos_token_ids.empty())
    j["eos_token_id"] = nullptr;
  else
    j["eos_token_id"] = c.eos_token_ids;
  j["pad_token_id"] = c.pad_token_id >= 0 ? nlohmann::ordered_json(c.pad_token_id) : nullptr;
  j["torch_dtype"] = c.torch_dtype;
  j["initializer_range"] = c.initializer_range;
  j["attention_bias"] = false;
  j["attention_dropout"] = 0.0;
  j["mlp_bias"] = false;
  j["pretraining_tp"] = 1;
  j["use_cache"] = true;
  if (mistral)
    j["sliding_window"] = c.sliding_window > 0 ? nlohmann::ordered_json(c.sliding_window) : nullptr;
  return j.dump(2) + "\n";
}

}  // namespace lema
