// `lema merge`: folds a LoRA adapter into its base model and writes a
// Hugging Face directory that transformers loads as it is:
//   config.json (torch_dtype updated), model.safetensors or
//   model-0000k-of-0000n.safetensors + model.safetensors.index.json
//   (metadata.total_size, weight_map), generation_config.json, tokenizer files.
// Tensor by tensor (memory near one projection in fp32 plus its cast):
// W' = W + scale * B @ A in fp32, then cast to the output dtype.
// The directory is built as "<out>.tmp.<pid>" and renamed into place; on any
// failure the temp directory is removed, so no partial output remains.
// Plain function; one caller per output directory.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/dtype.h"
#include "common/status.h"

namespace lema::engine {

struct MergeOptions {
  std::string base;                  // HF model directory
  std::string adapter;               // PEFT adapter directory
  std::string out;                   // must not exist
  std::optional<DType> dtype;        // nullopt: the base's dtype
  uint64_t shard_bytes = 5000000000;  // HF's "5GB"
  bool show_progress = true;
};

struct MergeStats {
  int n_shards = 0;
  uint64_t total_bytes = 0;       // tensor bytes written (index metadata.total_size)
  int64_t n_merged = 0;           // projections that received an adapter
};

Result<MergeStats> merge_adapter(const MergeOptions& options);

}  // namespace lema::engine
