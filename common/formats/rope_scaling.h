// RoPE scaling quantities that more than one place needs: the decoder
// (engine/llama_model.cpp) computes with them and the GGUF exporter
// (gguf_arch.cpp) writes them for llama.cpp, so each is computed here once.
// Plain functions of a ModelConfig; thread-safe.
#pragma once

#include "common/formats/model_config.h"

namespace lema {

// LongRoPE's scale of cos and sin (transformers' _compute_longrope_parameters,
// llama.cpp's "<arch>.rope.scaling.attn_factor"): the config's
// attention_factor when given; else, with factor the config's `factor` or
// max_position_embeddings / original_max_position_embeddings,
// sqrt(1 + ln(factor) / ln(original)) for factor > 1, and 1 otherwise.
// 1 for a config without longrope scaling.
double longrope_attention_factor(const ModelConfig& config);

}  // namespace lema
