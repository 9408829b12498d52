// Import of PEFT LoRA adapters made anywhere (PEFT itself, lema's own
// save_adapter in checkpoint.h): adapter_config.json + adapter_model.safetensors
// (or adapter_model.bin: refused, pickle). Keys are accepted with or without
// PEFT's adapter name (".lora_A.weight" and ".lora_A.default.weight").
// Settings lema cannot apply are refused with a message naming the key:
// DoRA (use_dora), bias other than "none", modules_to_save, non-empty
// rank_pattern / alpha_pattern, layers_to_transform, fan_in_fan_out, target
// modules other than the seven Llama projections, peft_type other than LORA.
// Export is checkpoint.h's save_adapter (one writer for the format).
//
// Plain functions; thread-safe.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <string>

#include "common/formats/model_config.h"
#include "common/base/status.h"
#include "engine/lora.h"

namespace lema::engine {

// Reads and checks adapter_config.json (strict, see above).
Result<LoraConfig> read_peft_config(const std::string& dir);

// Loads the adapter in `dir` for a model of shape `model`: every expected
// pair must be present with its shape (errors name the key, the expected and
// the found shape); unknown keys are refused. Weights of any float dtype are
// converted to `master_dtype` on `device`.
Result<std::unique_ptr<LoraAdapter>> load_peft_adapter(const std::string& dir, const ModelConfig& model,
                                                       at::ScalarType master_dtype, at::Device device);

// base_model_name_or_path of adapter_config.json ("" when absent).
Result<std::string> peft_base_model(const std::string& dir);

}  // namespace lema::engine
