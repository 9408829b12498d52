// `lema debug step`: one forward and backward of a given batch with given
// LoRA weights, dumped for parity checks against Hugging Face + PEFT
// (tests/gpu/hf_parity.py). No LibTorch in this header.
#pragma once

#include <string>

#include "common/base/status.h"

namespace lema::engine {

struct DebugStepOptions {
  std::string model;    // HF directory or layer file
  std::string adapter;  // PEFT adapter directory (weights and config); empty: fresh init with the options below
  std::string batch;    // JSON {"input_ids": [[...]], "labels": [[...]]}, right-padded, rectangular;
                        // packed rows add "segment_ids" and "position_ids" (engine/batch.h MicroBatch)
  std::string out;      // safetensors: logits [B,T,V] f32, loss [1] f64, grad.<PEFT key> f32 per LoRA tensor
  std::string dtype = "float32";
  std::string device = "cpu";
  int64_t lora_r = 8;
  double lora_alpha = 16.0;
  std::string targets = "all";
  uint64_t seed = 0;
  // > 0: also greedy-generate this many tokens (KV cache, the adapter on,
  // no stop at EOS) from each of the batch's "prompt_ids" rows (lists of any
  // length); dumped as generated.<row> [n] f64.
  int64_t generate = 0;
};

Status run_debug_step(const DebugStepOptions& options);

}  // namespace lema::engine
