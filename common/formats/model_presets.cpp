#include "common/formats/model_presets.h"

#include <cstring>

#include <cmath>
#include <nlohmann/json.hpp>

#include "common/base/file_util.h"
#include "common/base/parallel_for.h"
#include "common/formats/model_family.h"
#include "common/formats/layer_file_writer.h"
#include "common/formats/model_layout.h"
#include "common/formats/safetensors.h"

namespace lema {

namespace {

// tiny-<family>: the tiny shape with each feature of the family switched on
// and small enough that CPU tests see it: a sliding window of 16 tokens,
// head_dim apart from hidden / heads where the family allows it, the
// families' sliding and global layers interleaved.
Result<ModelConfig> tiny_family_preset(const std::string& name) {
  const std::string type = name.substr(5);
  const std::string model_type = type == "gemma3" ? "gemma3_text" : type;
  const FamilyInfo* f = family_by_model_type(model_type);
  if (f == nullptr || f->family == ModelFamily::kLlama) {
    return Status::invalid_argument("unknown model preset '" + name + "'");
  }
  ModelConfig c;
  c.family = f->family;
  c.architecture = f->architecture;
  c.hidden_size = 64;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 16;
  c.intermediate_size = 176;
  c.vocab_size = 512;
  c.max_position_embeddings = 512;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000.0;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  c.torch_dtype = "float32";
  c.initializer_range = 0.02;
  c.attention_bias = f->qkv_bias;
  c.sliding_window = 16;
  switch (c.family) {
    case ModelFamily::kLlama: break;
    case ModelFamily::kMistral: c.layer_sliding = {true, true}; break;
    case ModelFamily::kQwen2:  // use_sliding_window from max_window_layers = 1
      c.layer_sliding = {false, true};
      c.rope_theta = 1000000.0;
      break;
    case ModelFamily::kQwen3:
      c.layer_sliding = {false, true};
      c.head_dim = 32;
      c.tie_word_embeddings = true;
      break;
    case ModelFamily::kGemma2:
      c.layer_sliding = {true, false};
      c.hidden_act = "gelu_pytorch_tanh";
      c.head_dim = 32;
      c.query_pre_attn_scalar = 24;
      c.attn_logit_softcapping = 50.0;
      c.final_logit_softcapping = 30.0;
      c.tie_word_embeddings = true;
      break;
    case ModelFamily::kGemma3:
      c.layer_sliding = {true, false};
      c.hidden_act = "gelu_pytorch_tanh";
      c.head_dim = 32;
      c.query_pre_attn_scalar = 24;
      c.rope_theta = 1000000.0;
      c.rope_local_base_freq = 10000.0;
      c.rope_scaling.type = RopeScalingType::kLinear;
      c.rope_scaling.factor = 8.0;
      c.tie_word_embeddings = true;
      break;
    case ModelFamily::kPhi3: {
      // Fused projections, a sliding window on every layer, LongRoPE with an
      // original length of 20 (tests run 20 and 24 positions: both lists),
      // and Phi-4-mini's partial rotary factor: 12 of 16 dimensions rotate.
      c.layer_sliding = {true, true};
      c.partial_rotary_factor = 0.75;
      c.rope_scaling.type = RopeScalingType::kLongrope;
      c.rope_scaling.original_max_position_embeddings = 20;
      c.rope_scaling.short_factor = {1.0, 1.25, 1.5, 2.0, 3.0, 4.0};
      c.rope_scaling.long_factor = {1.5, 2.5, 4.0, 8.0, 16.0, 32.0};
      c.pad_token_id = 0;
      break;
    }
  }
  return c;
}

}  // namespace

Result<ModelConfig> model_preset(const std::string& name) {
  ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  c.torch_dtype = "float32";
  c.initializer_range = 0.02;
  c.tie_word_embeddings = false;
  if (name == "tiny") {
    c.hidden_size = 64;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.intermediate_size = 176;
    c.vocab_size = 512;
    c.max_position_embeddings = 512;
  } else if (name == "mini") {
    c.hidden_size = 128;
    c.n_layers = 4;
    c.n_heads = 4;
    c.n_kv_heads = 4;
    c.intermediate_size = 352;
    c.vocab_size = 2000;
    c.max_position_embeddings = 1024;
  } else if (name == "compact") {
    c.hidden_size = 192;
    c.n_layers = 4;
    c.n_heads = 4;
    c.n_kv_heads = 4;
    c.intermediate_size = 512;
    c.vocab_size = 2000;
    c.max_position_embeddings = 1024;
  } else if (name == "small") {
    c.hidden_size = 256;
    c.n_layers = 4;
    c.n_heads = 4;
    c.n_kv_heads = 4;
    c.intermediate_size = 688;
    c.vocab_size = 2000;
    c.max_position_embeddings = 1024;
  } else if (name == "llama2-70b") {
    c.hidden_size = 8192;
    c.n_layers = 80;
    c.n_heads = 64;
    c.n_kv_heads = 8;
    c.intermediate_size = 28672;
    c.vocab_size = 32000;
    c.max_position_embeddings = 4096;
  } else if (name.rfind("tiny-", 0) == 0) {
    return tiny_family_preset(name);
  } else {
    std::string known;
    for (const std::string& n : model_preset_names(true)) known += (known.empty() ? "" : ", ") + n;
    return Status::invalid_argument("unknown model preset '" + name + "' (known: " + known + ")");
  }
  c.head_dim = c.hidden_size / c.n_heads;
  return c;
}

std::vector<std::string> model_preset_names(bool with_large) {
  std::vector<std::string> names = {"tiny",       "mini",        "compact",     "small",       "tiny-mistral",
                                    "tiny-qwen2", "tiny-qwen3", "tiny-gemma2", "tiny-gemma3", "tiny-phi3"};
  if (with_large) names.push_back("llama2-70b");
  return names;
}

bool model_preset_is_large(const std::string& name) { return name == "llama2-70b"; }

namespace {
uint64_t splitmix64(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
// FNV-1a: gives each tensor its own stream, so one tensor's values do not
// depend on the others (or on their order).
uint64_t hash_name(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}
}  // namespace

void random_normal_for_tensor(const std::string& name, uint64_t seed, double std, float* out, size_t n) {
  const uint64_t start = seed ^ hash_name(name);
  const double kTwoPi = 6.283185307179586;
  // splitmix64 is a counter: the state before element i's pair (i even) is
  // start + i * gamma, so threads take disjoint even-aligned ranges and the
  // values do not depend on the split.
  parallel_for(static_cast<int64_t>(n), 1 << 20, [&](int64_t begin, int64_t end) {
    uint64_t state = start + static_cast<uint64_t>(begin) * 0x9E3779B97F4A7C15ull;
    for (size_t i = static_cast<size_t>(begin); i < static_cast<size_t>(end); i += 2) {
      // Uniforms in (0, 1]: 53 random bits.
      double u1 = (static_cast<double>(splitmix64(&state) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
      double u2 = static_cast<double>(splitmix64(&state) >> 11) * (1.0 / 9007199254740992.0);
      double r = std::sqrt(-2.0 * std::log(u1));
      out[i] = static_cast<float>(std * r * std::cos(kTwoPi * u2));
      if (i + 1 < n) out[i + 1] = static_cast<float>(std * r * std::sin(kTwoPi * u2));
    }
  });
}

namespace {

// Norm weights 1; matrices and biases normal(0, initializer_range)
// (transformers zeroes biases: random ones make them visible in tests).
void random_tensor_values(const TensorSpec& s, uint64_t seed, double std_dev, std::vector<float>& buf) {
  size_t n = 1;
  for (int64_t d : s.shape) n *= static_cast<size_t>(d);
  buf.assign(n, 1.0f);
  const bool bias = s.name.size() > 5 && s.name.compare(s.name.size() - 5, 5, ".bias") == 0;
  if (s.shape.size() == 2 || bias) random_normal_for_tensor(s.name, seed, std_dev, buf.data(), n);
}

}  // namespace

Status write_random_layer_file(const ModelConfig& config, const std::string& path, uint64_t seed, QuantType quant,
                               DType dtype, const std::function<void(uint64_t done, uint64_t total)>& progress) {
  const std::vector<TensorSpec> specs = model_tensor_specs(config);
  LayerFileWriter w;
  LEMA_RETURN_IF_ERROR(w.open(path, config, std::vector<DType>(specs.size(), dtype), quant));
  std::vector<float> buf;  // one tensor: memory O(one layer), never the model
  std::vector<uint8_t> cast;
  for (size_t i = 0; i < specs.size(); ++i) {
    random_tensor_values(specs[i], seed, config.initializer_range, buf);
    if (w.quantized(i)) {
      LEMA_RETURN_IF_ERROR(w.write_quantized(i, [&](int64_t offset, int64_t n, float* dst) {
        std::memcpy(dst, buf.data() + offset, static_cast<size_t>(n) * sizeof(float));
        return Status();
      }));
    } else {
      cast.resize(buf.size() * dtype_size(dtype));
      LEMA_RETURN_IF_ERROR(convert_dtype(DType::kF32, buf.data(), dtype, cast.data(), buf.size()));
      LEMA_RETURN_IF_ERROR(w.write_raw(specs[i].name, cast.data(), cast.size()));
    }
    if (progress) progress(w.written_bytes(), w.total_bytes());
  }
  return w.commit();
}

Status write_random_hf_model(const ModelConfig& config, const std::string& dir, uint64_t seed) {
  LEMA_RETURN_IF_ERROR(make_dirs(dir));
  ModelConfig c = config;
  c.torch_dtype = "float32";
  LEMA_RETURN_IF_ERROR(write_file_atomic(path_join(dir, "config.json"), model_config_to_json(c)));
  nlohmann::ordered_json gen;
  // None (null) where the tokenizer has no such token (Qwen has no BOS), as config.json writes it.
  gen["bos_token_id"] = c.bos_token_id >= 0 ? nlohmann::ordered_json(c.bos_token_id) : nlohmann::ordered_json(nullptr);
  gen["eos_token_id"] = c.eos_token_ids.size() == 1 ? nlohmann::ordered_json(c.eos_token_ids[0])
                        : c.eos_token_ids.empty()   ? nlohmann::ordered_json(nullptr)
                                                    : nlohmann::ordered_json(c.eos_token_ids);
  if (c.pad_token_id >= 0) gen["pad_token_id"] = c.pad_token_id;
  gen["transformers_version"] = "4.40.0";
  LEMA_RETURN_IF_ERROR(write_file_atomic(path_join(dir, "generation_config.json"), gen.dump(2) + "\n"));

  SafetensorsWriter w;
  w.set_metadata("format", "pt");
  std::vector<TensorSpec> specs = model_tensor_specs(c);
  for (const auto& s : specs) LEMA_RETURN_IF_ERROR(w.add_tensor(s.name, DType::kF32, s.shape));
  const std::string path = path_join(dir, "model.safetensors");
  LEMA_RETURN_IF_ERROR(w.open(path));
  std::vector<float> buf;
  for (const auto& s : specs) {
    random_tensor_values(s, seed, c.initializer_range, buf);
    LEMA_RETURN_IF_ERROR(w.write_tensor(s.name, buf.data(), buf.size() * sizeof(float)));
  }
  return w.commit();
}

}  // namespace lema
