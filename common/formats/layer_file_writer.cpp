#include "common/formats/layer_file_writer.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "common/base/parallel_for.h"
#include "common/formats/model_layout.h"

namespace lema {

namespace {

// Source elements quantized per step: 4 MiB of fp32, whole NF4 blocks.
// Values handed over and quantized at a time (64 MiB of fp32), split over
// the cores: a 70B model's 69G projection weights quantize in seconds.
constexpr int64_t kQuantChunkElements = 1 << 24;
static_assert(kQuantChunkElements % kNf4BlockSize == 0, "chunks hold whole blocks");

}  // namespace

Status LayerFileWriter::open(const std::string& path, ModelConfig config, const std::vector<DType>& dtypes,
                             QuantType quant) {
  specs_ = model_tensor_specs(config);
  if (dtypes.size() != specs_.size()) return Status::internal("layer file writer: one dtype per tensor needed");
  dtypes_ = dtypes;
  quant_ = quant;
  n_layers_ = config.n_layers;
  const size_t n_suffixes = layer_tensor_suffixes(config).size();
  quantized_.assign(specs_.size(), false);
  bool mixed = false;
  std::optional<DType> plain;  // the dtype of the unquantized tensors
  per_layer_ = 0;
  for (size_t i = 0; i < specs_.size(); ++i) {
    const bool in_layer = i >= 1 && i < 1 + static_cast<size_t>(config.n_layers) * n_suffixes;
    const std::string suffix = in_layer ? layer_suffix_of(specs_[i].name) : "";
    quantized_[i] = quant != QuantType::kNone && in_layer && is_quantized_layer_tensor(suffix);
    if (quantized_[i]) {
      const auto parts = quant_stored_tensors(quant, specs_[i].name, specs_[i].shape);
      for (const auto& p : parts) LEMA_RETURN_IF_ERROR(w_.add_tensor(p.name, p.dtype, p.shape));
      if (i >= 1 && i <= n_suffixes) per_layer_ += parts.size();
    } else {
      LEMA_RETURN_IF_ERROR(w_.add_tensor(specs_[i].name, dtypes[i], specs_[i].shape));
      if (i >= 1 && i <= n_suffixes) per_layer_ += 1;
      if (plain && *plain != dtypes[i]) mixed = true;
      plain = dtypes[i];
    }
  }
  if (!mixed && plain) config.torch_dtype = dtype_torch_name(*plain);
  nlohmann::json compact = nlohmann::json::parse(model_config_to_json(config));
  // "format":"pt" lets transformers' safetensors loader accept the file.
  w_.set_metadata("format", "pt");
  w_.set_metadata(kLayerFileMetaFormat, kLayerFileFormat);
  // Unquantized files stay version 1 (readable by older lema); a quantized
  // file is version 2, which older readers refuse instead of misreading.
  w_.set_metadata(kLayerFileMetaVersion, std::to_string(quant == QuantType::kNone ? 1 : kLayerFileVersion));
  if (quant != QuantType::kNone) w_.set_metadata(kLayerFileMetaQuant, quant_name(quant));
  w_.set_metadata(kLayerFileMetaConfig, compact.dump());
  w_.set_metadata(kLayerFileMetaNLayers, std::to_string(config.n_layers));
  w_.set_metadata(kLayerFileMetaTied, config.tie_word_embeddings ? "true" : "false");
  w_.set_metadata(kLayerFileMetaDType, mixed || !plain ? "mixed" : dtype_name(*plain));
  const size_t n_layers = static_cast<size_t>(config.n_layers), per_layer = per_layer_;
  w_.set_layout_metadata([n_layers, per_layer](const std::vector<TensorInfo>& tensors) {
    std::vector<ByteRange> ranges;
    for (size_t l = 0; l < n_layers; ++l) ranges.push_back(layer_range_in(tensors, l, per_layer));
    return std::map<std::string, std::string>{{kLayerFileMetaLayerRanges, layer_ranges_to_json(ranges)}};
  });
  w_.set_data_alignment(kLayerFileAlignment);
  LEMA_RETURN_IF_ERROR(w_.open(path));
  total_ = 0;
  for (const auto& t : w_.tensors()) total_ += t.nbytes;
  written_ = 0;
  return Status();
}

uint64_t LayerFileWriter::largest_layer_bytes() const {
  uint64_t best = 0;
  for (size_t l = 0; l < static_cast<size_t>(n_layers_); ++l) {
    best = std::max(best, layer_range_in(w_.tensors(), l, per_layer_).nbytes);
  }
  return best;
}

Status LayerFileWriter::write_raw(const std::string& name, const void* data, uint64_t nbytes) {
  LEMA_RETURN_IF_ERROR(w_.write_tensor_part(name, data, nbytes));
  written_ += nbytes;
  return Status();
}

Status LayerFileWriter::write_quantized(size_t i, const FillF32Fn& fill) {
  if (i >= specs_.size() || !quantized_[i]) return Status::internal("layer file writer: tensor is not quantized");
  const TensorSpec& spec = specs_[i];
  int64_t n = 1;
  for (int64_t d : spec.shape) n *= d;
  std::vector<float> x;
  auto put = [&](const std::string& name, const void* p, uint64_t nbytes) { return write_raw(name, p, nbytes); };
  if (quant_ == QuantType::kInt8 || quant_ == QuantType::kFp8) {
    // One byte per value and an fp32 scale per output row.
    const int64_t rows = spec.shape[0], cols = spec.shape[1];
    const int64_t chunk_rows = std::max<int64_t>(1, kQuantChunkElements / std::max<int64_t>(cols, 1));
    std::vector<uint8_t> q;
    std::vector<float> scale(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; r += chunk_rows) {
      const int64_t nr = std::min(chunk_rows, rows - r);
      x.resize(static_cast<size_t>(nr * cols));
      q.resize(x.size());
      LEMA_RETURN_IF_ERROR(fill(r * cols, nr * cols, x.data()));
      parallel_for(nr, 64, [&](int64_t r0, int64_t r1) {
        const float* xr = x.data() + r0 * cols;
        uint8_t* qr = q.data() + r0 * cols;
        float* sr = scale.data() + r + r0;
        if (quant_ == QuantType::kInt8) {
          int8_quantize_rows(xr, r1 - r0, cols, reinterpret_cast<int8_t*>(qr), sr);
        } else {
          fp8_quantize_rows(xr, r1 - r0, cols, qr, sr);
        }
      });
      LEMA_RETURN_IF_ERROR(put(spec.name, q.data(), q.size()));
    }
    return put(spec.name + ".scale", scale.data(), scale.size() * sizeof(float));
  }
  // NF4: the packed codes chunk by chunk, the absmax (and its double
  // quantization, which needs their mean) once the tensor is done.
  const int64_t nb = (n + kNf4BlockSize - 1) / kNf4BlockSize;
  std::vector<float> absmax(static_cast<size_t>(nb));
  std::vector<uint8_t> packed;
  for (int64_t e = 0; e < n; e += kQuantChunkElements) {
    const int64_t m = std::min(kQuantChunkElements, n - e);
    x.resize(static_cast<size_t>(m));
    packed.resize(static_cast<size_t>((m + 1) / 2));
    LEMA_RETURN_IF_ERROR(fill(e, m, x.data()));
    // Block-aligned parts: each is whole NF4 blocks (an even count of values).
    parallel_for(m, 1 << 16, [&](int64_t b0, int64_t b1) {
      nf4_quantize(x.data() + b0, b1 - b0, packed.data() + b0 / 2, absmax.data() + (e + b0) / kNf4BlockSize);
    });
    LEMA_RETURN_IF_ERROR(put(spec.name, packed.data(), packed.size()));
  }
  if (quant_ == QuantType::kNf4) return put(spec.name + ".absmax", absmax.data(), absmax.size() * sizeof(float));
  std::vector<int8_t> q(static_cast<size_t>(nb));
  std::vector<float> scale(static_cast<size_t>((nb + kNf4DqBlockSize - 1) / kNf4DqBlockSize));
  float offset = 0.0f;
  nf4_double_quantize(absmax.data(), nb, q.data(), scale.data(), &offset);
  LEMA_RETURN_IF_ERROR(put(spec.name + ".absmax", q.data(), q.size()));
  LEMA_RETURN_IF_ERROR(put(spec.name + ".absmax_scale", scale.data(), scale.size() * sizeof(float)));
  return put(spec.name + ".absmax_offset", &offset, sizeof(float));
}

Status LayerFileWriter::commit() { return w_.commit(); }

}  // namespace lema
