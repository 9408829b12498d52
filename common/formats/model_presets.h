// Named model shapes for tests and demos (`lema model init`, `lema model
// pretrain`), and writing a randomly initialised Hugging Face Llama directory.
// Plain functions; thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/formats/dtype.h"
#include "common/formats/model_config.h"
#include "common/formats/quant.h"

namespace lema {

// tiny:  hidden 64, 2 layers, 4 heads, 2 kv heads (GQA), intermediate 176, vocab 512.
// small: hidden 256, 4 layers, 4 heads, 4 kv heads, intermediate 688, vocab 2000.
// tiny-mistral, tiny-qwen2, tiny-qwen3, tiny-gemma2, tiny-gemma3: the tiny
// shape in each family with its features on (sliding window 16 on some
// layers, head_dim 32 where the family decouples it, soft-capping...).
// llama2-70b: Llama-2-70B's shape (hidden 8192, 80 layers, 64 heads, 8 kv
// heads, intermediate 28672, vocab 32000): 276 GB in fp32, so only as a
// quantized layer file (`lema model init --quant`), for the 70B benchmark.
Result<ModelConfig> model_preset(const std::string& name);
// The presets small enough for an fp32 HF directory; with_large adds
// llama2-70b.
std::vector<std::string> model_preset_names(bool with_large = false);
// True for a preset only written as a quantized layer file.
bool model_preset_is_large(const std::string& name);

// Writes `dir`/config.json, generation_config.json and model.safetensors
// (F32) with weights drawn from normal(0, initializer_range) as transformers
// initialises Linear and Embedding layers, RMSNorm weights = 1, biases
// normal as well (non-zero, so tests see them).
// Deterministic for a seed (own generator: splitmix64 + Box-Muller, so the
// bytes do not depend on the standard library). Creates `dir` if needed.
Status write_random_hf_model(const ModelConfig& config, const std::string& dir, uint64_t seed);

// The same random model written straight into a layer file at `path`
// (atomic): the projections quantized as `quant`, every other tensor in
// `dtype`. One tensor at a time, so a 70B NF4 base is written without
// ever holding the model. Equal, byte for byte, to write_random_hf_model
// followed by `lema convert --dtype DTYPE --quant QUANT`.
// `progress` (may be empty) is called after each tensor with the bytes
// written and the file's data size.
Status write_random_layer_file(const ModelConfig& config, const std::string& path, uint64_t seed, QuantType quant,
                               DType dtype, const std::function<void(uint64_t done, uint64_t total)>& progress = {});

// The i-th draw stream used above, exposed so tests can recompute a tensor:
// fills `out` with `n` normal(0, std) values for tensor `name` and `seed`.
void random_normal_for_tensor(const std::string& name, uint64_t seed, double std, float* out, size_t n);

}  // namespace lema
