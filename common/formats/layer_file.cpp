#include "common/formats/layer_file.h"

#include "common/base/regular_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <nlohmann/json.hpp>

#include "common/formats/hf_model.h"
#include "common/formats/model_layout.h"

namespace lema {

namespace {

// Metadata keys (docs/FORMATS.md).
constexpr const char* kKeyFormat = "lema.format";
constexpr const char* kKeyVersion = "lema.version";
constexpr const char* kKeyConfig = "lema.config";
constexpr const char* kKeyNLayers = "lema.n_layers";
constexpr const char* kKeyLayerRanges = "lema.layer_ranges";
constexpr const char* kKeyTied = "lema.tied";
constexpr const char* kKeyDType = "lema.dtype";

// Layer i's byte range from tensors in storage order (embed first).
ByteRange layer_range_of(const std::vector<TensorInfo>& tensors, size_t layer, size_t n_layer_tensors) {
  const size_t first = 1 + layer * n_layer_tensors;
  const size_t last = first + n_layer_tensors - 1;
  return {tensors[first].offset, tensors[last].offset + tensors[last].nbytes - tensors[first].offset};
}

std::string ranges_to_json(const std::vector<ByteRange>& ranges) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& r : ranges) j.push_back({r.offset, r.nbytes});
  return j.dump();
}

}  // namespace

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
  const std::string* format = get(kKeyFormat);
  if (format == nullptr || *format != kLayerFileFormat) {
    return Status::invalid_argument(path_ + ": not a lema layer file (metadata 'lema.format' is not '" +
                                    kLayerFileFormat + "'); make one with `lema convert HF_DIR -o OUT`");
  }
  const std::string* version = get(kKeyVersion);
  if (version == nullptr || *version != std::to_string(kLayerFileVersion)) {
    return Status::unsupported(path_ + ": layer file version '" + (version ? *version : "none") +
                               "', this lema reads version " + std::to_string(kLayerFileVersion) +
                               "; convert the model again with this lema");
  }
  const std::string* config_text = get(kKeyConfig);
  if (config_text == nullptr) return Status::corruption(path_ + ": metadata 'lema.config' missing");
  LEMA_ASSIGN_OR_RETURN(config_, parse_model_config(*config_text, path_ + " (metadata lema.config)"));

  const std::vector<TensorSpec> specs = model_tensor_specs(config_);
  const auto& tensors = header_.tensors;
  if (tensors.size() != specs.size()) {
    return Status::corruption(path_ + ": " + std::to_string(tensors.size()) +
                              " tensors, but the config needs " + std::to_string(specs.size()));
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
    if (!dtype_is_float(tensors[i].dtype)) {
      return Status::corruption(path_ + ": tensor '" + tensors[i].name + "' has non-float dtype " +
                                dtype_name(tensors[i].dtype));
    }
  }
  const std::string* tied = get(kKeyTied);
  const std::string want_tied = config_.tie_word_embeddings ? "true" : "false";
  if (tied == nullptr || *tied != want_tied) {
    return Status::corruption(path_ +
                              ": metadata 'lema.tied' disagrees with tie_word_embeddings in lema.config");
  }

  ranges_.clear();
  layer_tensors_.assign(static_cast<size_t>(config_.n_layers), {});
  const std::vector<std::string> suffixes = layer_tensor_suffixes(config_);
  const size_t n_layer_tensors = suffixes.size();
  for (size_t l = 0; l < static_cast<size_t>(config_.n_layers); ++l) {
    ByteRange r = layer_range_of(tensors, l, n_layer_tensors);
    ranges_.push_back(r);
    for (size_t k = 0; k < n_layer_tensors; ++k) {
      const TensorInfo& t = tensors[1 + l * n_layer_tensors + k];
      layer_tensors_[l].push_back({suffixes[k], t.dtype, t.shape, t.offset - r.offset, t.nbytes});
    }
  }
  const std::string* n_layers = get(kKeyNLayers);
  if (n_layers == nullptr || *n_layers != std::to_string(config_.n_layers)) {
    return Status::corruption(path_ + ": metadata 'lema.n_layers' disagrees with the config");
  }
  const std::string* ranges_text = get(kKeyLayerRanges);
  if (ranges_text == nullptr || *ranges_text != ranges_to_json(ranges_)) {
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
  ModelConfig config = model->config();
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

  SafetensorsWriter w;
  // src is never empty: it holds at least the embedding and the final norm.
  const DType first = options.target ? *options.target : src.front().info.dtype;
  bool mixed = false;
  for (size_t i = 0; i < src.size(); ++i) {
    DType d = options.target ? *options.target : src[i].info.dtype;
    mixed = mixed || d != first;
    LEMA_RETURN_IF_ERROR(w.add_tensor(src[i].info.name, d, src[i].info.shape));
  }
  if (!mixed) config.torch_dtype = dtype_torch_name(first);
  nlohmann::json compact = nlohmann::json::parse(model_config_to_json(config));
  // "format":"pt" lets transformers' safetensors loader accept the file.
  w.set_metadata("format", "pt");
  w.set_metadata(kKeyFormat, kLayerFileFormat);
  w.set_metadata(kKeyVersion, std::to_string(kLayerFileVersion));
  w.set_metadata(kKeyConfig, compact.dump());
  w.set_metadata(kKeyNLayers, std::to_string(config.n_layers));
  w.set_metadata(kKeyTied, config.tie_word_embeddings ? "true" : "false");
  w.set_metadata(kKeyDType, mixed ? "mixed" : dtype_name(first));
  const size_t n_layers = static_cast<size_t>(config.n_layers);
  const size_t per_layer = layer_tensor_suffixes(config).size();
  w.set_layout_metadata([n_layers, per_layer](const std::vector<TensorInfo>& tensors) {
    std::vector<ByteRange> ranges;
    for (size_t l = 0; l < n_layers; ++l) ranges.push_back(layer_range_of(tensors, l, per_layer));
    return std::map<std::string, std::string>{{kKeyLayerRanges, ranges_to_json(ranges)}};
  });
  w.set_data_alignment(kLayerFileAlignment);
  LEMA_RETURN_IF_ERROR(w.open(out_path));

  ConvertStats stats;
  uint64_t total = 0;
  for (const auto& t : w.tensors()) total += t.nbytes;
  for (size_t l = 0; l < n_layers; ++l) {
    stats.largest_layer_bytes = std::max(stats.largest_layer_bytes, layer_range_of(w.tensors(), l, per_layer).nbytes);
  }
  uint64_t done = 0;
  std::vector<uint8_t> cast_buf;
  for (size_t i = 0; i < src.size(); ++i) {
    const HfModel::TensorRef& ref = src[i];
    const TensorInfo& out = w.tensors()[i];
    const size_t in_size = dtype_size(ref.info.dtype), out_size = dtype_size(out.dtype);
    const uint64_t n_elems = ref.info.nbytes / in_size;
    const uint64_t chunk_elems = std::max<uint64_t>(1, options.chunk_bytes / in_size);
    const uint8_t* base = ref.data();
    for (uint64_t e = 0; e < n_elems; e += chunk_elems) {
      const uint64_t n = std::min(chunk_elems, n_elems - e);
      const uint8_t* in = base + e * in_size;
      if (ref.info.dtype == out.dtype) {
        LEMA_RETURN_IF_ERROR(w.write_tensor_part(out.name, in, n * in_size));
      } else {
        cast_buf.resize(n * out_size);
        LEMA_RETURN_IF_ERROR(convert_dtype(ref.info.dtype, in, out.dtype, cast_buf.data(), n));
        LEMA_RETURN_IF_ERROR(w.write_tensor_part(out.name, cast_buf.data(), n * out_size));
      }
      // Consumed source pages would otherwise stay resident (and count in
      // RSS) until the whole model had been mapped in.
      ref.file->release(ref.info.offset + e * in_size, n * in_size);
      done += n * out_size;
      if (options.progress) options.progress(done, total);
    }
  }
  LEMA_RETURN_IF_ERROR(w.commit());
  stats.bytes_written = w.data_start() + total;
  return stats;
}

}  // namespace lema
