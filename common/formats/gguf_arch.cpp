#include "common/formats/gguf_arch.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "common/formats/rope_scaling.h"

namespace lema {
namespace {

// The Llama layer: every family below starts from it.
const std::vector<std::pair<std::string, std::string>>& llama_layer_tensors() {
  static const std::vector<std::pair<std::string, std::string>> t = {
      {"input_layernorm.weight", "attn_norm.weight"},
      {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.k_proj.weight", "attn_k.weight"},
      {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.o_proj.weight", "attn_output.weight"},
      {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"},
  };
  return t;
}

std::vector<std::pair<std::string, std::string>> with(std::vector<std::pair<std::string, std::string>> extra) {
  std::vector<std::pair<std::string, std::string>> t = llama_layer_tensors();
  t.insert(t.end(), extra.begin(), extra.end());
  return t;
}

// Gemma's sandwich: post_attention_layernorm is the norm after attention in
// HF and llama.cpp alike; pre_feedforward_layernorm is llama.cpp's ffn_norm.
std::vector<std::pair<std::string, std::string>> gemma_layer_tensors(bool qk_norm) {
  std::vector<std::pair<std::string, std::string>> t = {
      {"input_layernorm.weight", "attn_norm.weight"},
      {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.k_proj.weight", "attn_k.weight"},
      {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.o_proj.weight", "attn_output.weight"},
      {"post_attention_layernorm.weight", "post_attention_norm.weight"},
      {"pre_feedforward_layernorm.weight", "ffn_norm.weight"},
      {"post_feedforward_layernorm.weight", "post_ffw_norm.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"},
  };
  if (qk_norm) {
    t.push_back({"self_attn.q_norm.weight", "attn_q_norm.weight"});
    t.push_back({"self_attn.k_norm.weight", "attn_k_norm.weight"});
  }
  return t;
}

// The table. Entries marked verified have been loaded and compared in
// llama.cpp (tests/integration/gguf_llama_cpp_test.cpp).
const std::vector<GgufArch>& arch_table() {
  static const std::vector<GgufArch> table = {
      {"llama", "llama", /*permute_qk=*/true, /*verified=*/true, llama_layer_tensors(), {}},
      // llama.cpp runs Mistral as Llama; its sliding window has no Llama key
      // (lema refuses sequences longer than the window, llama.cpp does not).
      {"mistral", "llama", true, true, llama_layer_tensors(), {}},
      // Qwen2/Qwen3 and Gemma rotate halves (llama.cpp's NEOX rope), as HF
      // stores them: no permutation.
      {"qwen2", "qwen2", false, true,
       with({{"self_attn.q_proj.bias", "attn_q.bias"},
             {"self_attn.k_proj.bias", "attn_k.bias"},
             {"self_attn.v_proj.bias", "attn_v.bias"}}),
       {}},
      {"qwen3", "qwen3", false, true,
       with({{"self_attn.q_norm.weight", "attn_q_norm.weight"}, {"self_attn.k_norm.weight", "attn_k_norm.weight"}}),
       {}},
      // Gemma's keys (soft-capping, window, pattern) come from ModelConfig in
      // add_gguf_model_metadata; its norms are stored as 1 + w.
      {"gemma2", "gemma2", false, true, gemma_layer_tensors(false), {}, /*norm_plus_one=*/true},
      {"gemma3_text", "gemma3", false, true, gemma_layer_tensors(true), {}, /*norm_plus_one=*/true},
      // Phi-3 fuses q/k/v and gate/up in HF and in llama.cpp alike, and
      // rotates halves (NEOX): no permutation. llama.cpp splits attn_qkv at
      // hidden and hidden + kv_dim, and ffn_up (gate rows, then up rows) in
      // halves, silu on the first: HF's layout as stored. The window is
      // written as the converter does; llama.cpp's phi3 ignores it
      // (check_gguf_config).
      {"phi3", "phi3", false, true,
       {{"input_layernorm.weight", "attn_norm.weight"},
        {"self_attn.qkv_proj.weight", "attn_qkv.weight"},
        {"self_attn.o_proj.weight", "attn_output.weight"},
        {"post_attention_layernorm.weight", "ffn_norm.weight"},
        {"mlp.gate_up_proj.weight", "ffn_up.weight"},
        {"mlp.down_proj.weight", "ffn_down.weight"}},
       {{"sliding_window", "attention.sliding_window", GgufValueType::kUint32, false}}},
  };
  return table;
}

const char* kLayerPrefix = "model.layers.";

bool ends_with(const std::string& s, const char* suffix) {
  const size_t k = std::strlen(suffix);
  return s.size() >= k && s.compare(s.size() - k, k, suffix) == 0;
}

// llama.cpp's sliding layers for a period n (llama_hparams::set_swa_pattern):
// layer il slides unless il % n == n - 1. 0 when no period gives `config`'s
// layers (a config without a window slides nowhere: any period will do, the
// window is written as the whole context).
int64_t swa_period(const ModelConfig& c) {
  if (c.sliding_window == 0) return -1;
  for (int64_t n = 1; n <= c.n_layers + 1; ++n) {
    bool same = true;
    for (int64_t il = 0; il < c.n_layers && same; ++il) same = c.is_sliding(il) == (il % n < n - 1);
    if (same) return n;
  }
  return 0;
}

// The head size llama.cpp's Gemma graphs scale q by (its f_attention_scale):
// hidden / heads for the 27B models (recognised by their layer count), else
// head_dim.
int64_t gemma_scale_dim(const GgufArch& arch, const ModelConfig& c) {
  const int64_t layers_27b = arch.name == "gemma2" ? 46 : 62;
  return c.n_layers == layers_27b ? c.hidden_size / c.n_heads : c.head_dim;
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

}  // namespace

Result<const GgufArch*> find_gguf_arch(const std::string& model_type) {
  for (const GgufArch& a : arch_table()) {
    if (a.model_type == model_type) return &a;
  }
  return Status::unsupported("export: model_type '" + model_type + "' has no GGUF mapping (known: " +
                             gguf_arch_list() + ")");
}

std::string gguf_arch_list() {
  std::string verified, unverified;
  for (const GgufArch& a : arch_table()) {
    std::string& s = a.verified ? verified : unverified;
    s += (s.empty() ? "" : ", ") + a.model_type;
  }
  std::string list = verified + " (verified with llama.cpp)";
  if (!unverified.empty()) list += "; " + unverified + " (table entries, unverified)";
  return list;
}

std::string model_type_of(const ModelConfig& config) {
  if (config.architecture == "MistralForCausalLM") return "mistral";
  if (config.architecture == "LlamaForCausalLM") return "llama";
  // Other families: "Qwen2ForCausalLM" -> "qwen2".
  std::string t = config.architecture;
  const size_t pos = t.find("ForCausalLM");
  if (pos != std::string::npos) t = t.substr(0, pos);
  for (char& c : t) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return t;
}

Result<std::string> gguf_tensor_name(const GgufArch& arch, const std::string& hf_name) {
  if (hf_name == "model.embed_tokens.weight") return std::string("token_embd.weight");
  if (hf_name == "model.norm.weight") return std::string("output_norm.weight");
  if (hf_name == "lm_head.weight") return std::string("output.weight");
  const size_t n = std::strlen(kLayerPrefix);
  if (hf_name.compare(0, n, kLayerPrefix) == 0) {
    const size_t dot = hf_name.find('.', n);
    if (dot != std::string::npos && dot > n &&
        hf_name.find_first_not_of("0123456789", n) == dot) {
      const std::string layer = hf_name.substr(n, dot - n);
      const std::string suffix = hf_name.substr(dot + 1);
      for (const auto& [hf, gguf] : arch.layer_tensors) {
        if (hf == suffix) return "blk." + layer + "." + gguf;
      }
    }
  }
  return Status::invalid_argument("export: tensor '" + hf_name + "' has no GGUF name for " + arch.model_type);
}

Status check_gguf_config(const GgufArch& arch, const ModelConfig& c, const std::string& source) {
  auto refuse = [&](const std::string& key, const std::string& why) {
    return Status::unsupported(source + ": key '" + key + "': " + why + " (GGUF " + arch.name +
                               " cannot express it; exporting would give a model that answers differently)");
  };
  const std::string& a = arch.name;
  if ((a == "qwen2" || a == "qwen3") && c.sliding_window > 0) {
    return refuse("use_sliding_window", "sliding-window attention on layers from max_window_layers on; llama.cpp's " +
                                            a + " attends to every position (the released Qwen configs set it false)");
  }
  if (a == "gemma2" || a == "gemma3") {
    if (!c.tie_word_embeddings) {
      return refuse("tie_word_embeddings", "false; llama.cpp's " + a + " always uses token_embd as the output");
    }
    const int64_t dim = gemma_scale_dim(arch, c);
    if (std::fabs(c.query_pre_attn_scalar - static_cast<double>(dim)) > 1e-9) {
      return refuse("query_pre_attn_scalar", num(c.query_pre_attn_scalar) + "; llama.cpp's " + a +
                                                 " scales attention by " + std::to_string(dim) + "^-0.5");
    }
    // gemma2 reads a period (attention.sliding_window_pattern); gemma3's is 6.
    bool expressible = swa_period(c) != 0;
    for (int64_t il = 0; a == "gemma3" && c.sliding_window > 0 && il < c.n_layers; ++il) {
      expressible = expressible && c.is_sliding(il) == (il % 6 < 5);
    }
    if (!expressible) {
      return refuse("layer_types", std::string("sliding layers off llama.cpp's ") +
                                       (a == "gemma2" ? "periodic pattern" : "pattern (every 6th layer global)"));
    }
  }
  if (a == "phi3") {
    // llama.cpp's phi3 views q, k and v in the fused output with heads of
    // hidden / heads, and its attn_output is [hidden, hidden].
    if (c.head_dim * c.n_heads != c.hidden_size) {
      return refuse("head_dim", std::to_string(c.head_dim) + " with " + std::to_string(c.n_heads) +
                                    " heads; llama.cpp's phi3 needs head_dim * num_attention_heads = hidden_size (" +
                                    std::to_string(c.hidden_size) + ")");
    }
    // llama.cpp's phi3 switches sliding-window attention off (every query
    // sees every key); lema slides as transformers does. They agree only
    // where no sequence can outgrow the window (Phi-3.5 and Phi-4-mini ship
    // a window longer than their context; Phi-3-mini-4k does not).
    bool slides = false;
    for (int64_t il = 0; il < c.n_layers; ++il) slides = slides || c.is_sliding(il);
    if (slides && c.sliding_window < c.max_position_embeddings) {
      return refuse("sliding_window", std::to_string(c.sliding_window) + " < max_position_embeddings " +
                                          std::to_string(c.max_position_embeddings) +
                                          "; llama.cpp's phi3 attends to every position, lema to the last " +
                                          std::to_string(c.sliding_window));
    }
    // Its phi3 graph reads rope factors from rope_factors_long/short only.
    if (c.rope_scaling.type == RopeScalingType::kLlama3) {
      return refuse("rope_scaling", "llama3; llama.cpp's phi3 takes no per-frequency divisors (rope_freqs)");
    }
  }
  if (a == "gemma2" && (c.attn_logit_softcapping <= 0 || c.final_logit_softcapping <= 0)) {
    return refuse(c.attn_logit_softcapping <= 0 ? "attn_logit_softcapping" : "final_logit_softcapping",
                  "null; llama.cpp's gemma2 always soft-caps");
  }
  if (a == "gemma3") {
    if (c.final_logit_softcapping > 0) {
      return refuse("final_logit_softcapping", num(c.final_logit_softcapping) + "; not verified with llama.cpp");
    }
    if (c.sliding_window > 0 && std::fabs(c.rope_local_base_freq - 10000.0) > 1e-9) {
      return refuse("rope_local_base_freq", num(c.rope_local_base_freq) +
                                                "; llama.cpp's gemma3 uses 10000 on its sliding layers");
    }
  }
  return Status();
}

bool gguf_norm_plus_one(const GgufArch& arch, const std::string& gguf_name) {
  return arch.norm_plus_one && ends_with(gguf_name, "norm.weight");
}

int64_t gguf_rope_permute_heads(const GgufArch& arch, const ModelConfig& config, const std::string& hf_name) {
  if (!arch.permute_qk) return 0;
  auto ends_with = [&](const char* s) {
    const size_t k = std::strlen(s);
    return hf_name.size() >= k && hf_name.compare(hf_name.size() - k, k, s) == 0;
  };
  if (ends_with("self_attn.q_proj.weight")) return config.n_heads;
  if (ends_with("self_attn.k_proj.weight")) return config.n_kv_heads;
  return 0;
}

void permute_rope_rows(const void* src, int64_t rows, int64_t cols, int64_t n_heads, size_t elem_bytes, void* dst) {
  LEMA_CHECK(n_heads > 0 && rows % n_heads == 0 && (rows / n_heads) % 2 == 0 && src != dst);
  const int64_t head_dim = rows / n_heads;
  const int64_t half = head_dim / 2;
  const size_t row_bytes = static_cast<size_t>(cols) * elem_bytes;
  const auto* s = static_cast<const uint8_t*>(src);
  auto* d = static_cast<uint8_t*>(dst);
  for (int64_t h = 0; h < n_heads; ++h) {
    for (int64_t i = 0; i < half; ++i) {
      for (int64_t j = 0; j < 2; ++j) {
        const int64_t to = h * head_dim + 2 * i + j;
        const int64_t from = h * head_dim + j * half + i;
        std::memcpy(d + static_cast<size_t>(to) * row_bytes, s + static_cast<size_t>(from) * row_bytes, row_bytes);
      }
    }
  }
}

Result<GgufFileType> parse_gguf_file_type(const std::string& name) {
  if (name == "f32") return GgufFileType::kF32;
  if (name == "f16") return GgufFileType::kF16;
  if (name == "bf16") return GgufFileType::kBF16;
  if (name == "q8_0") return GgufFileType::kQ8_0;
  if (name == "q4_0") return GgufFileType::kQ4_0;
  return Status::unsupported("export: GGUF type '" + name + "' is not built (known: f32, f16, bf16, q8_0, q4_0)");
}

const char* gguf_file_type_name(GgufFileType type) {
  switch (type) {
    case GgufFileType::kF32: return "f32";
    case GgufFileType::kF16: return "f16";
    case GgufFileType::kBF16: return "bf16";
    case GgufFileType::kQ8_0: return "q8_0";
    case GgufFileType::kQ4_0: return "q4_0";
  }
  return "?";
}

GgmlType gguf_tensor_type(GgufFileType file_type, const std::string& gguf_name, const std::vector<int64_t>& shape) {
  if (shape.size() < 2) return GgmlType::kF32;
  GgmlType t = GgmlType::kF32;
  switch (file_type) {
    case GgufFileType::kF32: return GgmlType::kF32;
    case GgufFileType::kF16: return GgmlType::kF16;
    case GgufFileType::kBF16: return GgmlType::kBF16;
    case GgufFileType::kQ8_0: t = GgmlType::kQ8_0; break;
    case GgufFileType::kQ4_0: t = gguf_name == "output.weight" ? GgmlType::kQ8_0 : GgmlType::kQ4_0; break;
  }
  return shape.back() % ggml_block_elems(t) == 0 ? t : GgmlType::kF16;
}

uint32_t gguf_file_type_id(GgufFileType type) {
  switch (type) {
    case GgufFileType::kF32: return 0;    // LLAMA_FTYPE_ALL_F32
    case GgufFileType::kF16: return 1;    // LLAMA_FTYPE_MOSTLY_F16
    case GgufFileType::kQ4_0: return 2;   // LLAMA_FTYPE_MOSTLY_Q4_0
    case GgufFileType::kQ8_0: return 7;   // LLAMA_FTYPE_MOSTLY_Q8_0
    case GgufFileType::kBF16: return 32;  // LLAMA_FTYPE_MOSTLY_BF16
  }
  return 0;
}

Status add_gguf_model_metadata(const GgufArch& arch, const ModelConfig& c, const nlohmann::json& config_json,
                               const std::string& source, GgufFileType file_type, GgufWriter* w) {
  const std::string& a = arch.name;
  auto u32 = [&](const std::string& key, int64_t v) -> Status {
    if (v < 0 || v > 0xFFFFFFFFll) {
      return Status::invalid_argument(source + ": " + key + " = " + std::to_string(v) + " does not fit a GGUF uint32");
    }
    w->set(a + "." + key, GgufValue::u32(static_cast<uint32_t>(v)));
    return Status();
  };
  w->set("general.architecture", GgufValue::string(a));
  w->set("general.file_type", GgufValue::u32(gguf_file_type_id(file_type)));
  if (file_type == GgufFileType::kQ8_0 || file_type == GgufFileType::kQ4_0) {
    w->set("general.quantization_version", GgufValue::u32(2));
  }
  LEMA_RETURN_IF_ERROR(u32("context_length", c.max_position_embeddings));
  LEMA_RETURN_IF_ERROR(u32("embedding_length", c.hidden_size));
  LEMA_RETURN_IF_ERROR(u32("block_count", c.n_layers));
  LEMA_RETURN_IF_ERROR(u32("feed_forward_length", c.intermediate_size));
  LEMA_RETURN_IF_ERROR(u32("attention.head_count", c.n_heads));
  LEMA_RETURN_IF_ERROR(u32("attention.head_count_kv", c.n_kv_heads));
  // Partial rotary (Phi-4-mini): llama.cpp rotates the first n_rot
  // dimensions of each head and passes the rest, as transformers does.
  LEMA_RETURN_IF_ERROR(u32("rope.dimension_count", c.rotary_dim()));
  LEMA_RETURN_IF_ERROR(u32("vocab_size", c.vocab_size));
  // llama.cpp derives the head size as embedding / heads unless told.
  if (c.head_dim * c.n_heads != c.hidden_size || a != "llama") {
    LEMA_RETURN_IF_ERROR(u32("attention.key_length", c.head_dim));
    LEMA_RETURN_IF_ERROR(u32("attention.value_length", c.head_dim));
  }
  w->set(a + ".attention.layer_norm_rms_epsilon", GgufValue::f32(static_cast<float>(c.rms_norm_eps)));
  w->set(a + ".rope.freq_base", GgufValue::f32(static_cast<float>(c.rope_theta)));
  if (c.rope_scaling.type == RopeScalingType::kLinear) {
    w->set(a + ".rope.scaling.type", GgufValue::string("linear"));
    w->set(a + ".rope.scaling.factor", GgufValue::f32(static_cast<float>(c.rope_scaling.factor)));
  }
  if (c.rope_scaling.type == RopeScalingType::kLongrope) {
    // llama.cpp takes rope_factors_long when its context per sequence is
    // longer than this, else the short ones (gguf_rope_tensors), and scales
    // cos and sin by attn_factor as transformers does.
    LEMA_RETURN_IF_ERROR(u32("rope.scaling.original_context_length", c.rope_scaling.original_max_position_embeddings));
    w->set(a + ".rope.scaling.attn_factor", GgufValue::f32(static_cast<float>(longrope_attention_factor(c))));
  }
  if (a == "gemma2" || a == "gemma3") {
    // A config without a window: one as long as the context slides nowhere.
    LEMA_RETURN_IF_ERROR(
        u32("attention.sliding_window", c.sliding_window > 0 ? c.sliding_window : c.max_position_embeddings));
    const int64_t period = swa_period(c);
    if (a == "gemma2" && period > 0 && period != 2) LEMA_RETURN_IF_ERROR(u32("attention.sliding_window_pattern", period));
  }
  if (a == "gemma2") {
    w->set(a + ".attn_logit_softcapping", GgufValue::f32(static_cast<float>(c.attn_logit_softcapping)));
    w->set(a + ".final_logit_softcapping", GgufValue::f32(static_cast<float>(c.final_logit_softcapping)));
  }
  for (const GgufExtraKey& k : arch.extra_keys) {
    if (!config_json.is_object() || !config_json.contains(k.hf_key) || config_json[k.hf_key].is_null()) {
      if (k.required) return Status::invalid_argument(source + ": '" + k.hf_key + "' is missing");
      continue;
    }
    const nlohmann::json& v = config_json[k.hf_key];
    if (!v.is_number()) return Status::invalid_argument(source + ": '" + k.hf_key + "' is not a number");
    if (k.type == GgufValueType::kFloat32) {
      w->set(a + "." + k.gguf_key, GgufValue::f32(v.get<float>()));
    } else {
      LEMA_RETURN_IF_ERROR(u32(k.gguf_key, v.get<int64_t>()));
    }
  }
  return Status();
}

std::vector<float> llama3_rope_factors(const ModelConfig& c) {
  const RopeScaling& s = c.rope_scaling;
  if (s.type != RopeScalingType::kLlama3) return {};
  // Llama 3.1's frequency-dependent scaling: wavelengths shorter than the
  // original context / high_freq_factor keep their frequency, longer than
  // original context / low_freq_factor are divided by `factor`, and the
  // band between is interpolated smoothly. llama.cpp divides by these.
  const double low_wavelen = static_cast<double>(s.original_max_position_embeddings) / s.low_freq_factor;
  const double high_wavelen = static_cast<double>(s.original_max_position_embeddings) / s.high_freq_factor;
  std::vector<float> factors;
  for (int64_t i = 0; i < c.head_dim; i += 2) {
    const double freq = 1.0 / std::pow(c.rope_theta, static_cast<double>(i) / static_cast<double>(c.head_dim));
    const double wavelen = 2.0 * M_PI / freq;
    double f;
    if (wavelen < high_wavelen) {
      f = 1.0;
    } else if (wavelen > low_wavelen) {
      f = s.factor;
    } else {
      const double smooth = (static_cast<double>(s.original_max_position_embeddings) / wavelen - s.low_freq_factor) /
                            (s.high_freq_factor - s.low_freq_factor);
      f = 1.0 / ((1.0 - smooth) / s.factor + smooth);
    }
    factors.push_back(static_cast<float>(f));
  }
  return factors;
}

std::vector<GgufRopeTensor> gguf_rope_tensors(const ModelConfig& c) {
  auto f32s = [](const std::vector<double>& v) {
    std::vector<float> f(v.size());
    std::transform(v.begin(), v.end(), f.begin(), [](double x) { return static_cast<float>(x); });
    return f;
  };
  switch (c.rope_scaling.type) {
    case RopeScalingType::kLlama3: return {{"rope_freqs.weight", llama3_rope_factors(c)}};
    case RopeScalingType::kLongrope:
      return {{"rope_factors_long.weight", f32s(c.rope_scaling.long_factor)},
              {"rope_factors_short.weight", f32s(c.rope_scaling.short_factor)}};
    default: return {};
  }
}

Status pad_gguf_vocab(int64_t n_vocab, GgufVocab* v) {
  const int64_t n = static_cast<int64_t>(v->tokens.size());
  if (n > n_vocab) {
    return Status::invalid_argument("export: the tokenizer has " + std::to_string(n) +
                                    " tokens but the model's embedding only " + std::to_string(n_vocab) + " rows");
  }
  for (int64_t id = n; id < n_vocab; ++id) {
    v->tokens.push_back("[PAD" + std::to_string(id) + "]");
    if (!v->scores.empty()) v->scores.push_back(-1000.0f);
    v->types.push_back(5);  // unused
  }
  return Status();
}

void add_gguf_vocab_metadata(const GgufVocab& v, GgufWriter* w) {
  w->set("tokenizer.ggml.model", GgufValue::string(v.model));
  if (!v.pre.empty()) w->set("tokenizer.ggml.pre", GgufValue::string(v.pre));
  w->set("tokenizer.ggml.tokens", GgufValue::strings(v.tokens));
  if (!v.scores.empty()) w->set("tokenizer.ggml.scores", GgufValue::f32s(v.scores));
  w->set("tokenizer.ggml.token_type", GgufValue::i32s(v.types));
  // llama.cpp requires the merges key for byte-level BPE, even when empty.
  if (!v.merges.empty() || v.model == "gpt2") w->set("tokenizer.ggml.merges", GgufValue::strings(v.merges));
  auto id = [&](const char* key, int32_t value) {
    if (value >= 0) w->set(key, GgufValue::u32(static_cast<uint32_t>(value)));
  };
  id("tokenizer.ggml.bos_token_id", v.bos_id);
  id("tokenizer.ggml.eos_token_id", v.eos_id);
  id("tokenizer.ggml.unknown_token_id", v.unk_id);
  id("tokenizer.ggml.padding_token_id", v.pad_id);
  w->set("tokenizer.ggml.add_bos_token", GgufValue::boolean(v.add_bos));
  w->set("tokenizer.ggml.add_eos_token", GgufValue::boolean(v.add_eos));
  if (v.model == "llama") w->set("tokenizer.ggml.add_space_prefix", GgufValue::boolean(v.add_space_prefix));
  if (!v.chat_template.empty()) w->set("tokenizer.chat_template", GgufValue::string(v.chat_template));
}

}  // namespace lema
