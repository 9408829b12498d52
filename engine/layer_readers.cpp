#include "engine/layer_readers.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/base/file_util.h"
#include "engine/dequant.h"
#include "engine/torch_types.h"

namespace lema::engine {

int64_t layer_numel(const ModelConfig& config) {
  int64_t total = 0;
  for (const auto& s : layer_tensor_shapes(config)) {
    int64_t n = 1;
    for (int64_t d : s) n *= d;
    total += n;
  }
  return total;
}

namespace {

// Reads exactly n bytes at offset; EINTR and short reads are retried.
Status pread_all(int fd, void* dst, uint64_t n, uint64_t offset, const std::string& path) {
  auto* p = static_cast<uint8_t*>(dst);
  while (n > 0) {
    const ssize_t got = ::pread(fd, p, n, static_cast<off_t>(offset));
    if (got < 0) {
      if (errno == EINTR) continue;
      return Status::io_error(path + ": read at offset " + std::to_string(offset) + ": " + std::strerror(errno));
    }
    if (got == 0) return Status::io_error(path + ": unexpected end of file at offset " + std::to_string(offset));
    p += got;
    n -= static_cast<uint64_t>(got);
    offset += static_cast<uint64_t>(got);
  }
  return Status();
}

// A file descriptor shared by the reader's copies.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

Result<at::Tensor> read_tensor(const LayerFile& file, int fd, const TensorInfo& info, at::ScalarType dtype) {
  LEMA_ASSIGN_OR_RETURN(at::ScalarType stored, scalar_type_of(info.dtype, file.path() + ": tensor '" + info.name + "'"));
  at::Tensor raw = at::empty({info.numel()}, at::TensorOptions().dtype(stored));
  if (static_cast<uint64_t>(raw.nbytes()) != info.nbytes) {
    return Status::invalid_argument(file.path() + ": tensor '" + info.name + "' has an unsupported dtype");
  }
  LEMA_RETURN_IF_ERROR(pread_all(fd, raw.data_ptr(), info.nbytes, info.offset, file.path()));
  return raw.view(info.shape).to(dtype);
}

}  // namespace

Result<LayerReader> layer_file_reader(std::shared_ptr<const LayerFile> file, at::ScalarType dtype) {
  LEMA_ASSIGN_OR_RETURN(DType want, dtype_of(dtype, "layer file reader"));
  auto fd = std::make_shared<Fd>();
  fd->fd = ::open(file->path().c_str(), O_RDONLY | O_CLOEXEC);
  if (fd->fd < 0) return Status::io_error(file->path() + ": " + std::strerror(errno));
  if (file->quant() != QuantType::kNone) {
    LEMA_ASSIGN_OR_RETURN(QuantLayerFormat format, quant_layer_format(*file));
    return LayerReader([file, fd, format](int64_t layer, at::Tensor& dst) -> Status {
      if (dst.scalar_type() != at::kByte || dst.numel() != format.stored_bytes || !dst.is_contiguous()) {
        return Status::internal("layer reader: bad destination buffer for a quantized layer");
      }
      const ByteRange range = file->layer_range(layer);
      LEMA_RETURN_IF_ERROR(pread_all(fd->fd, dst.data_ptr(), range.nbytes, range.offset, file->path()));
      return check_quant_scales(format, static_cast<const uint8_t*>(dst.data_ptr()), file->path(), layer);
    });
  }
  const int64_t numel = layer_numel(file->config());
  for (int64_t i = 0; i < file->n_layers(); ++i) {
    int64_t n = 0;
    for (const LayerTensor& t : file->layer_tensors(i)) {
      int64_t e = 1;
      for (int64_t d : t.shape) e *= d;
      n += e;
    }
    if (n != numel) {
      return Status::invalid_argument(file->path() + ": layer " + std::to_string(i) + " holds " + std::to_string(n) +
                                      " elements, the config needs " + std::to_string(numel));
    }
  }
  return LayerReader([file, fd, want, numel](int64_t layer, at::Tensor& dst) -> Status {
    if (dst.numel() != numel || !dst.is_contiguous()) return Status::internal("layer reader: bad destination buffer");
    const ByteRange range = file->layer_range(layer);
    const auto& tensors = file->layer_tensors(layer);
    bool direct = true;  // one read straight into dst
    uint64_t expect = 0;
    for (const LayerTensor& t : tensors) {
      if (t.dtype != want || t.offset != expect) direct = false;
      expect += t.nbytes;
    }
    if (direct && expect == range.nbytes) {
      return pread_all(fd->fd, dst.data_ptr(), range.nbytes, range.offset, file->path());
    }
    std::vector<uint8_t> raw(range.nbytes);
    LEMA_RETURN_IF_ERROR(pread_all(fd->fd, raw.data(), range.nbytes, range.offset, file->path()));
    auto* out = static_cast<uint8_t*>(dst.data_ptr());
    const size_t out_size = dtype_size(want);
    for (const LayerTensor& t : tensors) {
      const size_t n = t.nbytes / dtype_size(t.dtype);
      if (t.offset + t.nbytes > raw.size()) return Status::corruption(file->path() + ": tensor " + t.suffix + " out of its layer");
      LEMA_RETURN_IF_ERROR(convert_dtype(t.dtype, raw.data() + t.offset, want, out, n));
      out += n * out_size;
    }
    return Status();
  });
}

LayerReader tensor_map_reader(std::shared_ptr<const TensorMap> tensors, const ModelConfig& config) {
  const auto shapes = layer_tensor_shapes(config);
  return [tensors, shapes, config](int64_t layer, at::Tensor& dst) -> Status {
    const auto names = layer_tensor_names(config, layer);
    int64_t offset = 0;
    for (size_t k = 0; k < names.size(); ++k) {
      auto it = tensors->find(names[k]);
      if (it == tensors->end()) return Status::not_found("model tensor '" + names[k] + "' is missing");
      if (it->second.sizes() != at::IntArrayRef(shapes[k])) {
        return Status::invalid_argument("model tensor '" + names[k] + "' does not have the config's shape");
      }
      const int64_t n = it->second.numel();
      if (offset + n > dst.numel()) return Status::internal("layer reader: destination too small");
      dst.narrow(0, offset, n).copy_(it->second.reshape({-1}));
      offset += n;
    }
    if (offset != dst.numel()) return Status::internal("layer reader: destination size mismatch");
    return Status();
  };
}

Result<HeadWeights> load_head(const LayerFile& file, at::ScalarType dtype, at::Device device, int64_t vocab_chunk) {
  Fd fd;
  fd.fd = ::open(file.path().c_str(), O_RDONLY | O_CLOEXEC);
  if (fd.fd < 0) return Status::io_error(file.path() + ": " + std::strerror(errno));
  try {
    // A streamed head's tables stay on the host, pinned so that its lm_head
    // chunks copy to a GPU asynchronously.
    auto place = [&](const at::Tensor& t) {
      if (vocab_chunk <= 0) return t.to(device);
      return device.is_cuda() ? t.pin_memory() : t;
    };
    HeadWeights head;
    head.vocab_chunk = vocab_chunk;
    LEMA_ASSIGN_OR_RETURN(at::Tensor embed, read_tensor(file, fd.fd, file.embed(), dtype));
    LEMA_ASSIGN_OR_RETURN(at::Tensor norm, read_tensor(file, fd.fd, file.final_norm(), dtype));
    head.embed = place(embed);
    head.final_norm = norm.to(device);
    if (file.lm_head() == nullptr) {
      head.lm_head = head.embed;
    } else {
      LEMA_ASSIGN_OR_RETURN(at::Tensor lm, read_tensor(file, fd.fd, *file.lm_head(), dtype));
      head.lm_head = place(lm);
    }
    return head;
  } catch (const std::exception& e) {
    return status_from_exception(e, file.path() + ": loading the head");
  }
}

Result<HeadWeights> load_head(const TensorMap& tensors, const ModelConfig& config, at::ScalarType dtype,
                              at::Device device) {
  auto get = [&](const std::string& name) -> Result<at::Tensor> {
    auto it = tensors.find(name);
    if (it == tensors.end()) return Status::not_found("model tensor '" + name + "' is missing");
    return it->second.to(at::TensorOptions().dtype(dtype).device(device));
  };
  HeadWeights head;
  LEMA_ASSIGN_OR_RETURN(head.embed, get("model.embed_tokens.weight"));
  LEMA_ASSIGN_OR_RETURN(head.final_norm, get("model.norm.weight"));
  if (config.tie_word_embeddings) {
    head.lm_head = head.embed;
  } else {
    LEMA_ASSIGN_OR_RETURN(head.lm_head, get("lm_head.weight"));
  }
  return head;
}

}  // namespace lema::engine
