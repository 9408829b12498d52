#include "common/formats/layer_file.h"

#include "common/base/regular_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <nlohmann/json.hpp>

#include "common/formats/hf_model.h"
#include "common/formats/layer_file_writer.h"
#include "common/formats/model_layout.h"

namespace lema {

ByteRange layer_range_in(const std::vector<TensorInfo>& tensors, size_t layer, size_t per_layer) {
  const size_t first = 1 + layer * per_layer;
  const size_t last = first + per_layer - 1;
  return {tensors[first].offset, tensors[last].offset + tensors[last].nbytes - tensors[first].offset};
}

std::string layer_ranges_to_json(const std::vector<ByteRange>& ranges) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& r : ranges) j.push_back({r.offset, r.nbytes});
  return j.dump();
}

std::vector<StoredTensorSpec> stored_tensor_specs(const ModelConfig& config, QuantType quant) {
  std::vector<StoredTensorSpec> out;
  for (const TensorSpec& spec : model_tensor_specs(config)) {
    if (quant != QuantType::kNone && is_quantized_layer_tensor(layer_suffix_of(spec.name))) {
      for (auto& p : quant_stored_tensors(quant, spec.name, spec.shape)) out.push_back(std::move(p));
    } else {
      out.push_back({spec.name, DType::kF32, spec.shape, /*any_float=*/true});
    }
  }
  return out;
}

LayerFile::~LayerFile() {
  if (fd_ >= 0) ::close(fd_);
}

Status LayerFile::read_range(const ByteRange& range, void* dst) const {
  if (range.offset > header_.file_size || range.nbytes > header_.file_size - range.offset) {
    return Status::invalid_argument(path_ + ": range [" + std::to_string(range.offset) + ", +" +
                                    std::to_string(range.nbytes) + ") is outside the file");
  }
  auto* p = static_cast<uint8_t*>(dst);
  uint64_t off = range.offset, left = range.nbytes;
  while (left > 0) {
    ssize_t r = ::pread(fd_, p, left, static_cast<off_t>(off));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return status_from_errno("read " + path_, errno);
    if (r == 0) return Status::corruption(path_ + ": file shrank while reading at byte " + std::to_string(off));
    p += r;
    off += static_cast<uint64_t>(r);
    left -= static_cast<uint64_t>(r);
  }
  return Status();
}

Result<std::unique_ptr<LayerFile>> LayerFile::open(const std::string& path, bool map_file) {
  std::unique_ptr<LayerFile> f(new LayerFile());
  f->path_ = path;
  LEMA_ASSIGN_OR_RETURN(f->fd_, open_regular_file(path));
  if (map_file) {
    LEMA_RETURN_IF_ERROR(f->map_.open(path));
    LEMA_ASSIGN_OR_RETURN(f->header_,
                          parse_safetensors_header(f->map_.data(), f->map_.size(), f->map_.size(), path));
  } else {
    LEMA_ASSIGN_OR_RETURN(f->header_, read_safetensors_header(path));
  }
  LEMA_RETURN_IF_ERROR(f->validate());
  return f;
}

Status LayerFile::validate() {
  const auto& md = header_.metadata;
  auto get = [&](const char* key) -> const std::string* {
    auto it = md.find(key);
    return it == md.end() ? nullptr : &it->second;
  };
  const std::string* format = get(kLayerFileMetaFormat);
  if (format == nullptr || *format != kLayerFileFormat) {
    return Status::invalid_argument(path_ + ": not a lema layer file (metadata 'lema.format' is not '" +
                                    kLayerFileFormat + "'); make one with `lema convert HF_DIR -o OUT`");
  }
  const std::string* version = get(kLayerFileMetaVersion);
  if (version == nullptr || (*version != "1" && *version != std::to_string(kLayerFileVersion))) {
    return Status::unsupported(path_ + ": layer file version '" + (version ? *version : "none") +
                               "', this lema reads versions 1 to " + std::to_string(kLayerFileVersion) +
                               "; convert the model again with this lema");
  }
  // Version 1 has no quantization; version 2 names it (an unknown type is
  // refused by name: its bytes cannot be read as anything else).
  const std::string* quant = get(kLayerFileMetaQuant);
  if (*version == "1" && quant != nullptr) {
    return Status::corruption(path_ + ": metadata 'lema.quant' in a version 1 layer file");
  }
  if (*version != "1") {
    if (quant == nullptr) return Status::corruption(path_ + ": version 2 layer file without metadata 'lema.quant'");
    LEMA_ASSIGN_OR_RETURN(quant_, parse_quant(*quant, path_ + " (metadata lema.quant)"));
    if (quant_ == QuantType::kNone) return Status::corruption(path_ + ": version 2 layer file with lema.quant 'none'");
  }
  const std::string* config_text = get(kLayerFileMetaConfig);
  if (config_text == nullptr) return Status::corruption(path_ + ": metadata 'lema.config' missing");
  LEMA_ASSIGN_OR_RETURN(config_, parse_model_config(*config_text, path_ + " (metadata lema.config)"));

  const std::vector<StoredTensorSpec> specs = stored_tensor_specs(config_, quant_);
  const auto& tensors = header_.tensors;
  if (tensors.size() != specs.size()) {
    return Status::corruption(path_ + ": " + std::to_string(tensors.size()) + " tensors, but the config" +
                              (quant_ != QuantType::kNone ? std::string(" and lema.quant ") + quant_name(quant_) : "") +
                              " need " + std::to_string(specs.size()));
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    if (tensors[i].name != specs[i].name) {
      return Status::corruption(path_ + ": tensor #" + std::to_string(i) + " is '" + tensors[i].name +
                                "', expected '" + specs[i].name + "' (layer file order)");
    }
    if (tensors[i].shape != specs[i].shape) {
      return Status::corruption(path_ + ": tensor '" + tensors[i].name + "' has shape " +
                                shape_to_string(tensors[i].shape) + ", the config gives " +
                                shape_to_string(specs[i].shape));
    }
    if (specs[i].any_float && !dtype_is_float(tensors[i].dtype)) {
      return Status::corruption(path_ + ": tensor '" + tensors[i].name + "' has non-float dtype " +
                                dtype_name(tensors[i].dtype));
    }
    if (!specs[i].any_float && tensors[i].dtype != specs[i].dtype) {
      return Status::corruption(path_ + ": tensor '" + tensors[i].name + "' has dtype " + dtype_name(tensors[i].dtype) +
                                ", " + quant_name(quant_) + " stores it as " + dtype_name(specs[i].dtype));
    }
  }
  const std::string* tied = get(kLayerFileMetaTied);
  const std::string want_tied = config_.tie_word_embeddings ? "true" : "false";
  if (tied == nullptr || *tied != want_tied) {
    return Status::corruption(path_ +
                              ": metadata 'lema.tied' disagrees with tie_word_embeddings in lema.config");
  }

  ranges_.clear();
  layer_tensors_.assign(static_cast<size_t>(config_.n_layers), {});
  const size_t n_layer_tensors = (specs.size() - (config_.tie_word_embeddings ? 2 : 3)) /
                                 static_cast<size_t>(config_.n_layers);
  for (size_t l = 0; l < static_cast<size_t>(config_.n_layers); ++l) {
    ByteRange r = layer_range_in(tensors, l, n_layer_tensors);
    ranges_.push_back(r);
    for (size_t k = 0; k < n_layer_tensors; ++k) {
      const TensorInfo& t = tensors[1 + l * n_layer_tensors + k];
      layer_tensors_[l].push_back({layer_suffix_of(t.name), t.dtype, t.shape, t.offset - r.offset, t.nbytes});
    }
  }
  const std::string* n_layers = get(kLayerFileMetaNLayers);
  if (n_layers == nullptr || *n_layers != std::to_string(config_.n_layers)) {
    return Status::corruption(path_ + ": metadata 'lema.n_layers' disagrees with the config");
  }
  const std::string* ranges_text = get(kLayerFileMetaLayerRanges);
  if (ranges_text == nullptr || *ranges_text != layer_ranges_to_json(ranges_)) {
    return Status::corruption(path_ + ": metadata 'lema.layer_ranges' does not match the tensor offsets");
  }
  embed_ = tensors.front();
  final_norm_ = tensors[1 + static_cast<size_t>(config_.n_layers) * n_layer_tensors];
  if (!config_.tie_word_embeddings) lm_head_ = tensors.back();
  dtype_ = tensors.front().dtype;
  for (const auto& t : tensors) {
    if (t.dtype != *dtype_) dtype_.reset();
    if (!dtype_) break;
  }
  return Status();
}

// ---------------------------------------------------------------------------
// Conversion

Result<ConvertStats> convert_hf_to_layer_file(const std::string& hf_dir, const std::string& out_path,
                                              const ConvertOptions& options) {
  LEMA_ASSIGN_OR_RETURN(auto model, HfModel::open(hf_dir));
  const ModelConfig& config = model->config();
  const auto& src = model->tensors();
  // Renaming the output over a source shard would destroy the input model.
  struct stat out_st;
  if (::stat(out_path.c_str(), &out_st) == 0) {
    for (const auto& shard : model->shards()) {
      struct stat in_st;
      if (::stat(shard->path().c_str(), &in_st) == 0 && in_st.st_dev == out_st.st_dev &&
          in_st.st_ino == out_st.st_ino) {
        return Status::invalid_argument(out_path +
                                        ": is a weight file of the source model; choose another output");
      }
    }
  }

  std::vector<DType> dtypes;
  for (const auto& ref : src) dtypes.push_back(options.target ? *options.target : ref.info.dtype);
  LayerFileWriter w;
  LEMA_RETURN_IF_ERROR(w.open(out_path, config, dtypes, options.quant));
  if (w.specs().size() != src.size()) return Status::internal("convert: the source tensors are not the layout's");
  ConvertStats stats;
  stats.largest_layer_bytes = w.largest_layer_bytes();
  const uint64_t total = w.total_bytes();
  std::vector<uint8_t> cast_buf;
  for (size_t i = 0; i < src.size(); ++i) {
    const HfModel::TensorRef& ref = src[i];
    const size_t in_size = dtype_size(ref.info.dtype);
    const uint8_t* base = ref.data();
    if (w.quantized(i)) {
      // The quantizer reads fp32 (exact from F16/BF16 sources) a chunk at a time.
      LEMA_RETURN_IF_ERROR(w.write_quantized(i, [&](int64_t offset, int64_t n, float* dst) -> Status {
        const uint64_t at = static_cast<uint64_t>(offset) * in_size, bytes = static_cast<uint64_t>(n) * in_size;
        LEMA_RETURN_IF_ERROR(convert_dtype(ref.info.dtype, base + at, DType::kF32, dst, static_cast<size_t>(n)));
        ref.file->release(ref.info.offset + at, bytes);
        if (options.progress) options.progress(w.written_bytes(), total);
        return Status();
      }));
      continue;
    }
    const size_t out_size = dtype_size(w.dtype(i));
    const uint64_t n_elems = ref.info.nbytes / in_size;
    const uint64_t chunk_elems = std::max<uint64_t>(1, options.chunk_bytes / in_size);
    for (uint64_t e = 0; e < n_elems; e += chunk_elems) {
      const uint64_t n = std::min(chunk_elems, n_elems - e);
      const uint8_t* in = base + e * in_size;
      if (ref.info.dtype == w.dtype(i)) {
        LEMA_RETURN_IF_ERROR(w.write_raw(ref.info.name, in, n * in_size));
      } else {
        cast_buf.resize(n * out_size);
        LEMA_RETURN_IF_ERROR(convert_dtype(ref.info.dtype, in, w.dtype(i), cast_buf.data(), n));
        LEMA_RETURN_IF_ERROR(w.write_raw(ref.info.name, cast_buf.data(), n * out_size));
      }
      // Consumed source pages would otherwise stay resident (and count in
      // RSS) until the whole model had been mapped in.
      ref.file->release(ref.info.offset + e * in_size, n * in_size);
      if (options.progress) options.progress(w.written_bytes(), total);
    }
  }
  LEMA_RETURN_IF_ERROR(w.commit());
  stats.bytes_written = w.bytes_on_disk();
  return stats;
}

}  // namespace lema
