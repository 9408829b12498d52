// What llama.cpp expects of each model family in a GGUF file: the
// architecture name, the hyperparameter keys, the tensor names, and whether
// the Q/K rows are permuted. One table entry per Hugging Face model_type
// (config.json), so a new family is one entry in gguf_arch.cpp plus its
// extra config keys. Also the tokenizer and file-type metadata, which do not
// depend on the family. docs/EXPORT.md lists what is verified against
// llama.cpp. Plain data and functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/formats/gguf_writer.h"
#include "common/formats/model_config.h"

namespace lema {

// A hyperparameter that ModelConfig does not hold: read from config.json's
// `hf_key` and written as "<arch>.<gguf_key>".
struct GgufExtraKey {
  std::string hf_key;    // "sliding_window"
  std::string gguf_key;  // "attention.sliding_window"
  GgufValueType type = GgufValueType::kUint32;  // kUint32 or kFloat32
  bool required = false;  // false: skipped when config.json lacks it
};

struct GgufArch {
  std::string model_type;  // config.json "model_type": "llama"
  std::string name;        // general.architecture: "llama"
  // HF stores q_proj/k_proj rows in the rotate-half layout; llama.cpp's
  // Llama path rotates interleaved pairs, so these rows are permuted.
  bool permute_qk = false;
  // Checked end to end with llama.cpp (tests/integration/gguf_llama_cpp_test.cpp).
  bool verified = false;
  // Per-layer tensors: HF suffix after "model.layers.N." -> GGUF name after "blk.N.".
  std::vector<std::pair<std::string, std::string>> layer_tensors;
  std::vector<GgufExtraKey> extra_keys;
  // Gemma's RMSNorm scales by (1 + w) and HF stores w; llama.cpp's norm
  // scales by the weight, so its converter stores 1 + w (every *norm.weight).
  bool norm_plus_one = false;
};

// The entry for `model_type`, or kUnsupported listing the known ones.
Result<const GgufArch*> find_gguf_arch(const std::string& model_type);
// "llama, mistral, ... (verified with llama.cpp)", then the unverified
// table entries if there are any.
std::string gguf_arch_list();
// config.json's model_type for a config that lacks one, from its
// architecture ("LlamaForCausalLM" -> "llama").
std::string model_type_of(const ModelConfig& config);

// "model.layers.3.self_attn.q_proj.weight" -> "blk.3.attn_q.weight";
// kInvalidArgument for a tensor the family does not map.
Result<std::string> gguf_tensor_name(const GgufArch& arch, const std::string& hf_name);
// Heads whose rows `hf_name` permutes (n_heads for q_proj, n_kv_heads for
// k_proj) when arch.permute_qk, else 0. Also for LoRA B of those projections.
int64_t gguf_rope_permute_heads(const GgufArch& arch, const ModelConfig& config, const std::string& hf_name);
// Refuses a config whose maths llama.cpp's graph for `arch` cannot express
// (it would load and answer differently), naming the config key: a sliding
// window where llama.cpp has none (qwen2, qwen3; phi3 when a sequence can
// outgrow it), Gemma's attention scale (llama.cpp derives it from head_dim,
// or hidden / heads for the 27B layer count), sliding layers off llama.cpp's
// fixed pattern, Gemma 2 without soft-capping (llama.cpp always caps), Gemma
// with an untied lm_head (llama.cpp reuses token_embd), Phi-3 heads that do
// not split hidden_size or llama3 RoPE scaling. `source` names config.json.
Status check_gguf_config(const GgufArch& arch, const ModelConfig& config, const std::string& source);
// Whether the value of tensor `gguf_name` is stored as 1 + w (arch.norm_plus_one).
bool gguf_norm_plus_one(const GgufArch& arch, const std::string& gguf_name);
// Reorders the rows of a row-major [n_heads * head_dim, cols] matrix from the
// rotate-half layout (per head: the first halves, then the second halves of
// each rotary pair) to the interleaved one (pairs adjacent):
// dst row h*hd + 2i + j = src row h*hd + j*hd/2 + i. `elem_bytes` per element.
// REQUIRES: rows divisible by n_heads, head_dim even, src != dst.
void permute_rope_rows(const void* src, int64_t rows, int64_t cols, int64_t n_heads, size_t elem_bytes, void* dst);

// The output type the user asks for and the per-tensor choice llama.cpp's
// converters make: 1-D tensors (norms) stay f32; a quantized type falls back
// to f16 for rows that are not whole blocks; with q4_0, output.weight is q8_0
// (the logits are the most sensitive projection).
enum class GgufFileType { kF32, kF16, kBF16, kQ8_0, kQ4_0 };
Result<GgufFileType> parse_gguf_file_type(const std::string& name);
const char* gguf_file_type_name(GgufFileType type);
GgmlType gguf_tensor_type(GgufFileType file_type, const std::string& gguf_name, const std::vector<int64_t>& shape);
// llama.cpp's general.file_type number (LLAMA_FTYPE_*).
uint32_t gguf_file_type_id(GgufFileType type);

// Writes general.* and "<arch>.*" hyperparameters of `config` (plus the
// family's extra keys from `config_json`). `source` names config.json in
// errors.
Status add_gguf_model_metadata(const GgufArch& arch, const ModelConfig& config, const nlohmann::json& config_json,
                               const std::string& source, GgufFileType file_type, GgufWriter* writer);
// llama3 rope scaling: the per-frequency divisors llama.cpp reads from the
// "rope_freqs.weight" tensor ([head_dim / 2], f32). Empty for other scalings.
std::vector<float> llama3_rope_factors(const ModelConfig& config);
// The f32 RoPE tensors outside the layers that llama.cpp reads for the
// config's scaling: rope_freqs.weight (llama3), rope_factors_long.weight and
// rope_factors_short.weight ([rotary_dim / 2] each, longrope: the divisors
// of the frequencies); none for other scalings.
struct GgufRopeTensor {
  std::string name;
  std::vector<float> values;
};
std::vector<GgufRopeTensor> gguf_rope_tensors(const ModelConfig& config);

// A tokenizer as GGUF stores it (tokenizer.ggml.*).
struct GgufVocab {
  std::string model;  // "llama" (SentencePiece) or "gpt2" (byte-level BPE)
  std::string pre;    // tokenizer.ggml.pre; empty: not written
  std::vector<std::string> tokens;
  std::vector<float> scores;       // empty: not written
  std::vector<int32_t> types;      // 1 normal, 2 unknown, 3 control, 4 user defined, 5 unused, 6 byte
  std::vector<std::string> merges;  // "left right" by rank; gpt2 only
  int32_t bos_id = -1, eos_id = -1, unk_id = -1, pad_id = -1;
  bool add_bos = false, add_eos = false;
  bool add_space_prefix = false;   // llama only
  std::string chat_template;       // empty: not written
};
// Pads the vocabulary to `n_vocab` rows of the embedding with unused
// "[PAD<id>]" tokens; refuses a vocabulary larger than the embedding.
Status pad_gguf_vocab(int64_t n_vocab, GgufVocab* vocab);
void add_gguf_vocab_metadata(const GgufVocab& vocab, GgufWriter* writer);

}  // namespace lema
