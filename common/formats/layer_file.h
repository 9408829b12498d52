// The layer file (`*.lema.safetensors`): a valid safetensors file whose
// tensors are stored embed, layer 0..N-1 (each layer one contiguous byte
// range, tensors in model_layout.h order), final norm, lm_head (omitted when
// tied). `__metadata__` holds the config and each layer's byte range.
// Layout and keys: docs/FORMATS.md.
//
// LayerFile owns the (optional) map of the file; pointers into it live as
// long as the LayerFile. All accessors are const and safe from many threads.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/formats/dtype.h"
#include "common/formats/model_config.h"
#include "common/formats/quant.h"
#include "common/formats/safetensors.h"

namespace lema {

constexpr const char* kLayerFileFormat = "layer-file";
// Version 2 adds quantized projections (`lema.quant`); an unquantized file
// is still written as version 1, and both are read.
constexpr int kLayerFileVersion = 2;

// Metadata keys (docs/FORMATS.md).
constexpr const char* kLayerFileMetaFormat = "lema.format";
constexpr const char* kLayerFileMetaVersion = "lema.version";
constexpr const char* kLayerFileMetaConfig = "lema.config";
constexpr const char* kLayerFileMetaNLayers = "lema.n_layers";
constexpr const char* kLayerFileMetaLayerRanges = "lema.layer_ranges";
constexpr const char* kLayerFileMetaTied = "lema.tied";
constexpr const char* kLayerFileMetaDType = "lema.dtype";
constexpr const char* kLayerFileMetaQuant = "lema.quant";  // version 2: nf4, nf4-dq, int8 or fp8
// Data section start alignment (tensor data starts here; each layer start is
// aligned too when all tensor sizes are multiples of it, as in real models).
constexpr uint64_t kLayerFileAlignment = 64;

struct ByteRange {
  uint64_t offset = 0;  // absolute in the file
  uint64_t nbytes = 0;
};

// A tensor of one decoder layer as stored (a quantized projection's
// companions are tensors of their own: "self_attn.q_proj.weight.absmax").
struct LayerTensor {
  std::string suffix;  // "self_attn.q_proj.weight"
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t offset = 0;  // relative to the layer's first byte
  uint64_t nbytes = 0;
};

class LayerFile {
 public:
  // map_file = false reads only the header (pread); data() is then nullptr
  // and the caller preads layer ranges itself (e.g. into pinned buffers).
  static Result<std::unique_ptr<LayerFile>> open(const std::string& path, bool map_file = true);

  const ModelConfig& config() const { return config_; }
  int64_t n_layers() const { return config_.n_layers; }
  // REQUIRES: 0 <= i < n_layers()
  ByteRange layer_range(int64_t i) const { return ranges_[static_cast<size_t>(i)]; }
  const std::vector<LayerTensor>& layer_tensors(int64_t i) const {
    return layer_tensors_[static_cast<size_t>(i)];
  }
  const TensorInfo& embed() const { return embed_; }            // [vocab, hidden]
  const TensorInfo& final_norm() const { return final_norm_; }  // [hidden]
  // nullptr when tied to the embedding.
  const TensorInfo* lm_head() const { return lm_head_ ? &*lm_head_ : nullptr; }
  bool tied() const { return !lm_head_.has_value(); }
  // The dtype shared by every tensor, or nullopt when mixed (always for a
  // quantized file: its codes are U8/I8).
  std::optional<DType> dtype() const { return dtype_; }
  // How the projection weights are stored (kNone: as every other tensor).
  QuantType quant() const { return quant_; }
  const SafetensorsHeader& header() const { return header_; }
  const std::string& path() const { return path_; }
  // Start of the mapped file (nullptr when opened without a map).
  const uint8_t* data() const { return map_.data(); }
  // Reads `range` (e.g. layer_range(i)) into `dst` with pread, whether or
  // not the file is mapped. Thread-safe. REQUIRES: dst holds range.nbytes.
  Status read_range(const ByteRange& range, void* dst) const;

  ~LayerFile();
  LayerFile(const LayerFile&) = delete;
  LayerFile& operator=(const LayerFile&) = delete;

 private:
  LayerFile() = default;
  Status validate();
  std::string path_;
  int fd_ = -1;  // for read_range
  MappedFile map_;
  SafetensorsHeader header_;
  ModelConfig config_;
  std::vector<ByteRange> ranges_;
  std::vector<std::vector<LayerTensor>> layer_tensors_;
  TensorInfo embed_;
  TensorInfo final_norm_;
  std::optional<TensorInfo> lm_head_;
  std::optional<DType> dtype_;
  QuantType quant_ = QuantType::kNone;
};

// Every tensor of a layer file of `config` as stored, in file order: the
// model_tensor_specs, each projection weight replaced by its stored parts
// when `quant` is not kNone (unquantized tensors: any_float).
std::vector<StoredTensorSpec> stored_tensor_specs(const ModelConfig& config, QuantType quant);
// Layer `layer`'s byte range from tensors in storage order (embed first,
// `per_layer` stored tensors per layer).
ByteRange layer_range_in(const std::vector<TensorInfo>& tensors, size_t layer, size_t per_layer);
// The `lema.layer_ranges` value: [[offset, nbytes], ...]
std::string layer_ranges_to_json(const std::vector<ByteRange>& ranges);

// Progress of a conversion: bytes written so far of `total`.
using ConvertProgressFn = std::function<void(uint64_t done_bytes, uint64_t total_bytes)>;

struct ConvertOptions {
  std::optional<DType> target;         // nullopt: keep each tensor's dtype
  QuantType quant = QuantType::kNone;  // the seven projection weights of every layer
  ConvertProgressFn progress;          // may be empty
  uint64_t chunk_bytes = 16ull << 20;  // source bytes processed per step
};

struct ConvertStats {
  uint64_t bytes_written = 0;  // whole output file
  uint64_t largest_layer_bytes = 0;
};

// Streams an HF model directory into a layer file at `out_path` (atomic):
// one chunk at a time is read from the source maps, cast if asked, written,
// and its source pages are released, so memory stays near one chunk.
Result<ConvertStats> convert_hf_to_layer_file(const std::string& hf_dir, const std::string& out_path,
                                              const ConvertOptions& options);

}  // namespace lema
