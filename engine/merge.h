// `lema merge`: folds a LoRA adapter into its base model and writes a
// Hugging Face directory that transformers loads as it is:
//   config.json (torch_dtype updated), model.safetensors or
//   model-0000k-of-0000n.safetensors + model.safetensors.index.json
//   (metadata.total_size, weight_map), generation_config.json, tokenizer files.
// The base is an HF directory or a layer file (*.lema.safetensors, whose
// metadata holds the config): tokenizer and generation files are copied from
// the base directory (the layer file's directory), then from `tokenizer`.
// Tensor by tensor (memory near one projection in fp32 plus its cast):
// W' = W + scale * B @ A in fp32, then cast to the output dtype.
// The directory is built as "<out>.tmp.<pid>" and renamed into place; on any
// failure the temp directory is removed, so no partial output remains.
// Plain function; one caller per output directory.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/formats/dtype.h"
#include "common/base/status.h"

namespace lema::engine {

struct MergeOptions {
  std::string base;                  // HF model directory or layer file
  std::string adapter;               // PEFT adapter directory
  std::string out;                   // must not exist
  // Tokenizer file (tokenizer.json / *.model) or directory copied into the
  // output after the base's own files; empty: only the base's.
  std::string tokenizer;
  std::optional<DType> dtype;        // nullopt: the base's dtype
  uint64_t shard_bytes = 5000000000;  // HF's "5GB"
  bool show_progress = true;
  // Called after each tensor is written (may be empty). A non-OK return
  // stops the merge with that status (e.g. a cancelled pipeline stage); no
  // output remains.
  std::function<Status(uint64_t tensors_done, uint64_t tensors_total)> on_tensor;
  // When set, no directory is written (`out`, `tokenizer`, `dtype` and
  // `shard_bytes` are ignored): each merged tensor goes to the sink in
  // storage order (model_layout.h), in fp32 and valid only during the call.
  // `lema export` streams a GGUF file this way.
  using TensorSink = std::function<Status(const std::string& name, const std::vector<int64_t>& shape,
                                          const float* data)>;  // data: [shape...] row-major
  TensorSink tensor_sink;
};

struct MergeStats {
  int n_shards = 0;
  uint64_t total_bytes = 0;       // tensor bytes written (index metadata.total_size)
  int64_t n_merged = 0;           // projections that received an adapter
};

Result<MergeStats> merge_adapter(const MergeOptions& options);

}  // namespace lema::engine
