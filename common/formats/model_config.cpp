#include "common/formats/model_config.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "common/base/file_util.h"
#include "common/formats/model_family.h"

namespace lema {

using json = nlohmann::json;

namespace {

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

  // The family from architectures[0] (or model_type when that is absent);
  // when both are given they must name the same family.
  Status family(ModelConfig* c) const {
    const FamilyInfo* by_arch = nullptr;
    auto a = root_.find("architectures");
    if (a != root_.end() && !a->is_null()) {
      if (!a->is_array() || a->size() != 1 || !(*a)[0].is_string()) {
        return error("architectures", "expected a list of one name, got " + a->dump());
      }
      const std::string arch = (*a)[0].get<std::string>();
      by_arch = family_by_architecture(arch);
      if (by_arch == nullptr) {
        return Status::unsupported(source_ + ": architecture '" + arch + "' is not supported; supported: " +
                                   supported_families());
      }
    }
    const FamilyInfo* by_type = nullptr;
    auto mt = root_.find("model_type");
    if (mt != root_.end() && !mt->is_null()) {
      if (!mt->is_string()) return error("model_type", "expected a string, got " + mt->dump());
      by_type = family_by_model_type(mt->get<std::string>());
      if (by_type == nullptr) {
        return Status::unsupported(source_ + ": key 'model_type': '" + mt->get<std::string>() +
                                   "' is not supported; supported: " + supported_families());
      }
    }
    if (by_arch == nullptr && by_type == nullptr) {
      return error("architectures", "missing, and so is model_type; supported: " + supported_families());
    }
    if (by_arch != nullptr && by_type != nullptr && by_arch != by_type) {
      return error("model_type", std::string("'") + by_type->model_type + "' does not match architectures '" +
                                     by_arch->architecture + "'");
    }
    const FamilyInfo* f = by_arch != nullptr ? by_arch : by_type;
    c->family = f->family;
    c->architecture = f->architecture;
    return Status();
  }

  // Keys that ask for a model lema does not run (mixture of experts):
  // refused rather than read as a dense model.
  Status no_experts() const {
    for (const char* key : {"num_experts", "num_local_experts", "n_routed_experts", "moe_intermediate_size"}) {
      auto it = root_.find(key);
      if (it != root_.end() && !it->is_null() && !(it->is_number() && it->get<double>() == 0)) {
        return Status::unsupported(source_ + ": key '" + key + "': mixture-of-experts models are not supported");
      }
    }
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
    // Gemma in transformers 5: one object per layer type.
    if (it->contains("full_attention") || it->contains("sliding_attention")) {
      for (auto& [type, params] : it->items()) {
        if (type != "full_attention" && type != "sliding_attention") {
          return error("rope_parameters." + type, "unknown layer type (expected full_attention, sliding_attention)");
        }
        if (!params.is_object()) return error("rope_parameters." + type, "expected an object");
        json wrapped = json::object({{"rope_parameters", params}});
        ConfigParser sub(wrapped, source_, "rope_parameters." + type + ".");
        ModelConfig part;
        LEMA_RETURN_IF_ERROR(sub.rope(&part));
        if (type == "full_attention") {
          c->rope_theta = part.rope_theta;
          c->rope_scaling = part.rope_scaling;
        } else {
          if (part.rope_scaling.type != RopeScalingType::kNone) {
            return error("rope_parameters.sliding_attention", "scaling of the sliding layers' RoPE is not supported");
          }
          c->rope_local_base_freq = part.rope_theta;
        }
      }
      return Status();
    }
    ConfigParser sub(*it, source_, "rope_parameters.");
    LEMA_RETURN_IF_ERROR(sub.get_double("rope_theta", &c->rope_theta));
    c->rope_scaling = RopeScaling{};
    return rope_scaling_object("rope_parameters", c);
  }

  // Which layers use sliding-window attention, as transformers decides it
  // per family: layer_types when listed, else the family's rule.
  Status sliding(ModelConfig* c) const {
    const int64_t n = c->n_layers;
    int64_t window = 0;
    if (auto it = root_.find("sliding_window"); it != root_.end() && !it->is_null()) {
      LEMA_RETURN_IF_ERROR(get_int("sliding_window", kMaxDim * 64, &window));
    }
    std::vector<bool> slides(static_cast<size_t>(n), false);
    auto lt = root_.find("layer_types");
    const bool listed = lt != root_.end() && !lt->is_null();
    if (listed) {
      if (!lt->is_array() || static_cast<int64_t>(lt->size()) != n) {
        return error("layer_types", "expected a list of num_hidden_layers (" + std::to_string(n) + ") names");
      }
      for (int64_t i = 0; i < n; ++i) {
        const json& t = (*lt)[static_cast<size_t>(i)];
        const std::string name = t.is_string() ? t.get<std::string>() : t.dump();
        if (name == "sliding_attention") {
          slides[static_cast<size_t>(i)] = true;
        } else if (name != "full_attention") {
          return Status::unsupported(source_ + ": key 'layer_types[" + std::to_string(i) + "]': '" + name +
                                     "' is not supported (supported: full_attention, sliding_attention)");
        }
      }
    }
    switch (c->family) {
      case ModelFamily::kLlama:
        // LlamaForCausalLM has no sliding window: transformers never reads the key.
        window = 0;
        break;
      case ModelFamily::kMistral:
      case ModelFamily::kPhi3:  // Phi3Model: every layer slides when sliding_window is set
        if (!listed) slides.assign(static_cast<size_t>(n), true);
        break;
      case ModelFamily::kQwen2:
      case ModelFamily::kQwen3: {
        bool use = false;
        LEMA_RETURN_IF_ERROR(get_bool("use_sliding_window", &use));
        if (!use) window = 0;
        int64_t from = n;
        if (auto it = root_.find("max_window_layers"); it != root_.end() && !it->is_null()) {
          if (!it->is_number_integer() || it->get<int64_t>() < 0) return error("max_window_layers", "expected an integer >= 0");
          from = it->get<int64_t>();
        }
        if (!listed)
          for (int64_t i = 0; i < n; ++i) slides[static_cast<size_t>(i)] = i >= from;
        break;
      }
      case ModelFamily::kGemma2:
        if (!listed)
          for (int64_t i = 0; i < n; ++i) slides[static_cast<size_t>(i)] = i % 2 == 0;
        break;
      case ModelFamily::kGemma3: {
        int64_t pattern = 6;
        LEMA_RETURN_IF_ERROR(get_int("sliding_window_pattern", 4096, &pattern, false));
        if (!listed)
          for (int64_t i = 0; i < n; ++i) slides[static_cast<size_t>(i)] = (i + 1) % pattern != 0;
        break;
      }
    }
    bool any = false;
    for (bool b : slides) any = any || b;
    // A window that covers every position is plain causal attention.
    if (window == 0 || !any || window >= c->max_position_embeddings) return Status();
    c->sliding_window = window;
    c->layer_sliding = slides;
    return Status();
  }

  // Gemma's extra keys: attention scale, soft-capping, the local RoPE base.
  Status gemma(ModelConfig* c) const {
    if (c->family != ModelFamily::kGemma2 && c->family != ModelFamily::kGemma3) {
      for (const char* key : {"attn_logit_softcapping", "final_logit_softcapping", "query_pre_attn_scalar"}) {
        auto it = root_.find(key);
        if (it != root_.end() && !it->is_null()) {
          return Status::unsupported(source_ + ": key '" + key + "' is not supported for model_type " +
                                     family_info(c->family).model_type);
        }
      }
      return Status();
    }
    c->query_pre_attn_scalar = static_cast<double>(c->head_dim);
    LEMA_RETURN_IF_ERROR(get_double("query_pre_attn_scalar", &c->query_pre_attn_scalar));
    LEMA_RETURN_IF_ERROR(get_double("attn_logit_softcapping", &c->attn_logit_softcapping));
    LEMA_RETURN_IF_ERROR(get_double("final_logit_softcapping", &c->final_logit_softcapping));
    if (c->family == ModelFamily::kGemma3) {
      if (c->rope_local_base_freq == 0) c->rope_local_base_freq = 10000.0;
      LEMA_RETURN_IF_ERROR(get_double("rope_local_base_freq", &c->rope_local_base_freq));
    }
    return Status();
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
    ConfigParser sub(*it, source_, std::string(key) + ".");
    // transformers 5 keeps partial_rotary_factor beside the RoPE settings.
    LEMA_RETURN_IF_ERROR(sub.get_double("partial_rotary_factor", &c->partial_rotary_factor));
    // rope_parameters always exists in transformers 5, with no type meaning none.
    if (type == "default" || (type.empty() && std::string(key) == "rope_parameters")) return Status();
    const std::string k = key;
    // "su" is the name Phi-3's first configs gave longrope.
    if (type == "longrope" || type == "su") return longrope(*it, k, c);
    if (type != "linear" && type != "llama3") {
      return Status::unsupported(source_ + ": key '" + k + "': type '" + type +
                                 "' is not supported (supported: none, linear, llama3, longrope/su for phi3)");
    }
    rs.type = type == "linear" ? RopeScalingType::kLinear : RopeScalingType::kLlama3;
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

  // LongRoPE (transformers' _compute_longrope_parameters): the factor
  // lists, and optionally factor, attention_factor and the original length
  // (else the top-level key, read in phi3()).
  Status longrope(const json& obj, const std::string& k, ModelConfig* c) const {
    if (c->family != ModelFamily::kPhi3) {
      return Status::unsupported(source_ + ": key '" + k + "': type longrope is supported for phi3 only, not " +
                                 family_info(c->family).model_type);
    }
    RopeScaling& rs = c->rope_scaling;
    rs.type = RopeScalingType::kLongrope;
    rs.original_max_position_embeddings = 0;  // phi3() takes the top-level key when this one is absent
    ConfigParser sub(obj, source_, k + ".");
    for (const char* name : {"short_factor", "long_factor"}) {
      auto f = obj.find(name);
      if (f == obj.end() || !f->is_array() || f->empty()) return sub.error(name, "expected a list of numbers");
      std::vector<double>& out = std::string(name) == "short_factor" ? rs.short_factor : rs.long_factor;
      out.clear();
      for (const json& v : *f) {
        if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() <= 0) {
          return sub.error(name, "expected positive numbers, got " + v.dump());
        }
        out.push_back(v.get<double>());
      }
    }
    if (auto f = obj.find("factor"); f != obj.end() && !f->is_null()) {
      LEMA_RETURN_IF_ERROR(sub.get_double("factor", &rs.factor));
      rs.factor_given = true;
    }
    LEMA_RETURN_IF_ERROR(sub.get_double("attention_factor", &rs.attention_factor));
    LEMA_RETURN_IF_ERROR(sub.get_int("original_max_position_embeddings", kMaxDim * 64,
                                     &rs.original_max_position_embeddings, false));
    return Status();
  }

 public:
  // Phi-3's keys: the original context length (top level), the rotary
  // share, and dropouts lema does not apply (refused unless 0). Other
  // families refuse a rotary share below 1 (their decoders rotate whole heads).
  Status phi3(ModelConfig* c) const {
    LEMA_RETURN_IF_ERROR(get_double("partial_rotary_factor", &c->partial_rotary_factor));
    if (c->partial_rotary_factor > 1.0) return error("partial_rotary_factor", "must be in (0, 1]");
    if (c->family != ModelFamily::kPhi3) {
      if (c->partial_rotary_factor != 1.0) {
        return Status::unsupported(source_ + ": key 'partial_rotary_factor' is not supported for model_type " +
                                   family_info(c->family).model_type);
      }
      return Status();
    }
    const int64_t rd = c->rotary_dim();
    if (rd < 2 || rd % 2 != 0) {
      return error("partial_rotary_factor", "head_dim * partial_rotary_factor = " + std::to_string(rd) +
                                                " must be an even number >= 2");
    }
    for (const char* key : {"resid_pdrop", "embd_pdrop", "attention_dropout"}) {
      auto it = root_.find(key);
      if (it != root_.end() && !it->is_null() && !(it->is_number() && it->get<double>() == 0)) {
        return Status::unsupported(source_ + ": key '" + key + "': " + it->dump() +
                                   " is not supported (lema applies no dropout there; only 0)");
      }
    }
    RopeScaling& rs = c->rope_scaling;
    if (rs.type != RopeScalingType::kLongrope) return Status();
    if (rs.original_max_position_embeddings == 0) {
      LEMA_RETURN_IF_ERROR(get_int("original_max_position_embeddings", kMaxDim * 64,
                                   &rs.original_max_position_embeddings, false));
    }
    if (rs.original_max_position_embeddings == 0) {
      return error("original_max_position_embeddings", "missing (longrope needs the pretrained context length)");
    }
    const size_t want = static_cast<size_t>(rd / 2);
    if (rs.short_factor.size() != want || rs.long_factor.size() != want) {
      return error("rope_scaling", "short_factor and long_factor must have rotary_dim / 2 = " + std::to_string(want) +
                                       " values each, got " + std::to_string(rs.short_factor.size()) + " and " +
                                       std::to_string(rs.long_factor.size()));
    }
    return Status();
  }

 private:
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
    LEMA_RETURN_IF_ERROR(p.family(&c));
    LEMA_RETURN_IF_ERROR(p.no_experts());
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
    // Gemma's config classes tie the embeddings unless told otherwise.
    c.tie_word_embeddings = c.family == ModelFamily::kGemma2 || c.family == ModelFamily::kGemma3;
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
      // Llama's attention_bias also puts a bias on o_proj, Qwen3's on every
      // projection: neither is built (Qwen2's q/k/v bias is, from the table).
      return Status::unsupported(source + ": key 'attention_bias': true is not supported");
    }
    c.attention_bias = family_info(c.family).qkv_bias;
    bool mlp_bias = false;
    LEMA_RETURN_IF_ERROR(p.get_bool("mlp_bias", &mlp_bias));
    if (mlp_bias) return Status::unsupported(source + ": key 'mlp_bias': true is not supported");
    // Gemma names its activation hidden_activation (hidden_act is legacy there).
    const bool gemma = c.family == ModelFamily::kGemma2 || c.family == ModelFamily::kGemma3;
    c.hidden_act = gemma ? "gelu_pytorch_tanh" : "silu";
    const char* act_key = gemma ? "hidden_activation" : "hidden_act";
    if (auto it = root.find(act_key); it != root.end() && !it->is_null()) {
      const std::string act = it->is_string() ? it->get<std::string>() : it->dump();
      const bool ok = gemma ? act == "gelu_pytorch_tanh" : (act == "silu" || act == "swish");
      if (!ok) {
        return Status::unsupported(source + ": key '" + act_key + "': '" + act + "' is not supported (only " +
                                   c.hidden_act + " for " + family_info(c.family).model_type + ")");
      }
    }
    LEMA_RETURN_IF_ERROR(p.sliding(&c));
    LEMA_RETURN_IF_ERROR(p.gemma(&c));
    LEMA_RETURN_IF_ERROR(p.phi3(&c));
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
  const FamilyInfo& f = family_info(c.family);
  const bool gemma = c.family == ModelFamily::kGemma2 || c.family == ModelFamily::kGemma3;
  j["architectures"] = {f.architecture};
  j["model_type"] = f.model_type;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.n_layers;
  j["num_attention_heads"] = c.n_heads;
  j["num_key_value_heads"] = c.n_kv_heads;
  j["head_dim"] = c.head_dim;
  j[gemma ? "hidden_activation" : "hidden_act"] = c.hidden_act;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  if (c.rope_scaling.type == RopeScalingType::kNone) {
    j["rope_scaling"] = nullptr;
  } else {
    nlohmann::ordered_json rs;
    const RopeScaling& s = c.rope_scaling;
    if (s.type == RopeScalingType::kLongrope) {
      // Phi3Config's spelling: "type", the lists, the length at the top level.
      rs["type"] = "longrope";
      rs["short_factor"] = s.short_factor;
      rs["long_factor"] = s.long_factor;
      if (s.factor_given) rs["factor"] = s.factor;
      if (s.attention_factor > 0) rs["attention_factor"] = s.attention_factor;
    } else {
      rs["rope_type"] = s.type == RopeScalingType::kLinear ? "linear" : "llama3";
      rs["factor"] = s.factor;
    }
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
  j["attention_bias"] = false;  // Qwen2's q/k/v bias is implied by its class
  j["attention_dropout"] = 0.0;
  if (c.family == ModelFamily::kLlama) {
    j["mlp_bias"] = false;
    j["pretraining_tp"] = 1;
  }
  j["use_cache"] = true;
  // The sliding window, spelled the way the family's config class reads it;
  // layer_types states the choice per layer where the class knows the key.
  const nlohmann::ordered_json window = c.sliding_window > 0 ? nlohmann::ordered_json(c.sliding_window) : nullptr;
  switch (c.family) {
    case ModelFamily::kLlama: break;
    case ModelFamily::kMistral: j["sliding_window"] = window; break;
    case ModelFamily::kPhi3:
      j["sliding_window"] = window;
      j["partial_rotary_factor"] = c.partial_rotary_factor;
      if (c.rope_scaling.type == RopeScalingType::kLongrope)
        j["original_max_position_embeddings"] = c.rope_scaling.original_max_position_embeddings;
      j["resid_pdrop"] = 0.0;
      j["embd_pdrop"] = 0.0;
      break;
    case ModelFamily::kQwen2:
    case ModelFamily::kQwen3: {
      j["use_sliding_window"] = c.sliding_window > 0;
      j["sliding_window"] = window;
      int64_t first = c.n_layers;
      for (int64_t i = 0; i < c.n_layers; ++i)
        if (c.is_sliding(i)) { first = i; break; }
      j["max_window_layers"] = first;
      break;
    }
    case ModelFamily::kGemma2:
    case ModelFamily::kGemma3:
      j["sliding_window"] = c.sliding_window > 0 ? c.sliding_window : c.max_position_embeddings;
      j["query_pre_attn_scalar"] = c.query_pre_attn_scalar;
      j["attn_logit_softcapping"] =
          c.attn_logit_softcapping > 0 ? nlohmann::ordered_json(c.attn_logit_softcapping) : nullptr;
      j["final_logit_softcapping"] =
          c.final_logit_softcapping > 0 ? nlohmann::ordered_json(c.final_logit_softcapping) : nullptr;
      if (c.family == ModelFamily::kGemma3) j["rope_local_base_freq"] = c.rope_local_base_freq;
      break;
  }
  if (c.family != ModelFamily::kLlama && c.family != ModelFamily::kMistral && c.family != ModelFamily::kPhi3) {
    nlohmann::ordered_json types = nlohmann::ordered_json::array();
    for (int64_t i = 0; i < c.n_layers; ++i) types.push_back(c.is_sliding(i) ? "sliding_attention" : "full_attention");
    j["layer_types"] = types;
  }
  return j.dump(2) + "\n";
}

}  // namespace lema
