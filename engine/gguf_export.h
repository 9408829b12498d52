// GGUF export for llama.cpp and Ollama (docs/EXPORT.md), the code of `lema
// export` and of the pipeline's export stage: a model from an HF directory or
// a layer file, streamed tensor by tensor, or base + PEFT adapter merged on
// the way (merge.h's tensor sink); or the adapter alone as a GGUF LoRA.
// Family metadata, tensor names, the Q/K permutation and Gemma's 1 + w norms
// come from common/formats/gguf_arch.h, the tokenizer from gguf_vocab.h. A
// family or config llama.cpp has not been checked to compute alike is
// refused. The file appears only complete: it is written as
// "<out>.tmp.<pid>", fsynced and renamed (GgufWriter); on any failure, a
// kill or a full disk, nothing is left under `out`.
// Plain functions; one caller per output file.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "common/base/status.h"

namespace lema::engine {

struct GgufExportOptions {
  std::string model;    // HF directory or layer file (the base, with `adapter`)
  std::string adapter;  // PEFT adapter directory: merged in (model) or exported (LoRA); empty: none
  std::string out;      // must not exist
  std::string type = "f16";  // f32 | f16 | bf16 | q8_0 | q4_0 (LoRA: f32 | f16)
  std::string tokenizer;     // tokenizer file or directory; empty: the model's directory
  std::string tokenizer_pre;  // llama.cpp pre-tokenizer name for a byte-level regex not detected
  std::string name;           // general.name; empty: the model's file name
  bool show_progress = true;
  // Called after each tensor (LoRA: each A/B pair) is written; a non-OK
  // return stops the export with that status and leaves no file.
  std::function<Status(uint64_t done, uint64_t total)> on_tensor;
};

struct GgufExportStats {
  std::string arch;  // general.architecture
  std::string type;  // the file type asked for
  size_t n_tensors = 0;
  uint64_t bytes = 0;     // file size
  int64_t n_merged = 0;   // projections that received the adapter (model with adapter)
  int64_t lora_rank = 0;  // LoRA only
  double lora_alpha = 0;  // LoRA only: adapter.lora.alpha
};

Result<GgufExportStats> export_gguf_model(const GgufExportOptions& options);
Result<GgufExportStats> export_gguf_lora(const GgufExportOptions& options);

}  // namespace lema::engine
