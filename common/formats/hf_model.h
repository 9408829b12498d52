// A Hugging Face Llama-family model directory opened for reading:
// config.json plus model.safetensors, or shards listed in
// model.safetensors.index.json. Every expected tensor (model_layout.h) is
// found and its shape checked against the config at open(). Pickle
// checkpoints (pytorch_model*.bin) are refused. Import rules: docs/FORMATS.md.
//
// Owns the shard maps; TensorRef pointers live as long as the HfModel.
// Safe to read from many threads.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/formats/model_config.h"
#include "common/formats/safetensors.h"

namespace lema {

class HfModel {
 public:
  struct TensorRef {
    const SafetensorsReader* file = nullptr;
    TensorInfo info;  // offset absolute in file->path()
    const uint8_t* data() const { return file->data(info); }
  };

  static Result<std::unique_ptr<HfModel>> open(const std::string& dir);

  const ModelConfig& config() const { return config_; }
  const std::string& dir() const { return dir_; }
  // Tensors in storage order (model_layout.h model_tensor_specs); lm_head is
  // absent when tied.
  const std::vector<TensorRef>& tensors() const { return tensors_; }
  // nullptr when absent.
  const TensorRef* find(const std::string& name) const;
  const std::vector<std::unique_ptr<SafetensorsReader>>& shards() const { return shards_; }
  // Source tensors present in the files but not used (e.g. rotary inv_freq
  // buffers, or an lm_head identical by tie).
  const std::vector<std::string>& ignored() const { return ignored_; }
  uint64_t total_bytes() const;

 private:
  HfModel() = default;
  Status load_shards();
  ModelConfig config_;
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsReader>> shards_;
  std::vector<TensorRef> tensors_;
  std::map<std::string, size_t> index_;
  std::vector<std::string> ignored_;
};

// Copies the tokenizer and generation files found at `from` into `to_dir`,
// each atomically. `from` is a model directory (tokenizer.json,
// tokenizer.model, tokenizer_config.json, special_tokens_map.json,
// added_tokens.json, generation_config.json, when present) or one tokenizer
// file, copied under its HF name with the settings files next to it.
Status copy_hf_side_files(const std::string& from, const std::string& to_dir);

}  // namespace lema
