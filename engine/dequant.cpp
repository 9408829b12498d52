#include "engine/dequant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>

#include "common/formats/model_layout.h"
#include "engine/layer_source.h"
#include "engine/torch_types.h"

#ifdef LEMA_WITH_CUDA
#include <c10/cuda/CUDAStream.h>

#include "engine/cuda/dequant_kernels.h"
#endif

namespace lema::engine {

namespace {

int64_t numel_of(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// A stored tensor of the layer's bytes as `type`: a view when its offset
// suits the element size, else a copy (tiny tensors of odd shapes only;
// real models keep every part aligned).
at::Tensor typed(const at::Tensor& bytes, const LayerTensor& t, at::ScalarType type) {
  at::Tensor b = bytes.narrow(0, static_cast<int64_t>(t.offset), static_cast<int64_t>(t.nbytes));
  if (t.offset % at::elementSize(type) != 0) b = b.clone();
  return b.view(type);
}

bool is_scale_suffix(const std::string& s) {
  for (const char* tail : {".absmax", ".scale", ".absmax_scale", ".absmax_offset"}) {
    const size_t n = std::strlen(tail);
    if (s.size() > n && s.compare(s.size() - n, n, tail) == 0) return true;
  }
  return false;
}

// The LibTorch path of the per-row formats (int8, fp8): out[r, c] =
// fp32(code_value(r, c) * scale[r]), rows in chunks of about
// kDequantChunkElements; row_values(r, nr) gives rows [r, r + nr) as fp32.
void dequantize_rows(int64_t rows, int64_t cols, const at::Tensor& scale, at::Tensor& out,
                     const std::function<at::Tensor(int64_t r, int64_t nr)>& row_values) {
  const int64_t chunk_rows = std::max<int64_t>(1, kDequantChunkElements / std::max<int64_t>(cols, 1));
  for (int64_t r = 0; r < rows; r += chunk_rows) {
    const int64_t nr = std::min(chunk_rows, rows - r);
    out.narrow(0, r, nr).copy_(row_values(r, nr) * scale.narrow(0, r, nr).view({nr, 1}));
  }
}

#ifdef LEMA_WITH_CUDA
// lema's kernels take CUDA tensors that are contiguous and whose output
// dtype they write; anything else (fp64 on the device, odd strides) takes
// the LibTorch path, which gives the same bits.
bool kernel_output(const at::Tensor& out, cuda::OutType* type) {
  if (!out.is_cuda() || !out.is_contiguous()) return false;
  switch (out.scalar_type()) {
    case at::kFloat: *type = cuda::OutType::kF32; return true;
    case at::kHalf: *type = cuda::OutType::kF16; return true;
    case at::kBFloat16: *type = cuda::OutType::kBF16; return true;
    default: return false;
  }
}

bool kernel_input(const at::Tensor& t, const at::Tensor& out, at::ScalarType type) {
  return t.device() == out.device() && t.is_contiguous() && t.scalar_type() == type;
}

cudaStream_t current_stream(const at::Tensor& on) {
  return c10::cuda::getCurrentCUDAStream(on.device().index()).stream();
}

void check_launch(const char* what) {
  if (const char* e = cuda::last_error()) throw std::runtime_error(std::string(what) + ": CUDA launch failed: " + e);
}
#endif

}  // namespace

Result<QuantLayerFormat> quant_layer_format(const LayerFile& file) {
  if (file.quant() == QuantType::kNone) return Status::internal(file.path() + ": not a quantized layer file");
  QuantLayerFormat f;
  f.quant = file.quant();
  f.stored = file.layer_tensors(0);
  f.stored_bytes = static_cast<int64_t>(file.layer_range(0).nbytes);
  for (int64_t i = 1; i < file.n_layers(); ++i) {
    const auto& t = file.layer_tensors(i);
    bool same = t.size() == f.stored.size() && static_cast<int64_t>(file.layer_range(i).nbytes) == f.stored_bytes;
    for (size_t k = 0; same && k < t.size(); ++k) {
      same = t[k].suffix == f.stored[k].suffix && t[k].dtype == f.stored[k].dtype && t[k].offset == f.stored[k].offset;
    }
    if (!same) return Status::corruption(file.path() + ": layer " + std::to_string(i) + " is not laid out as layer 0");
  }
  return f;
}

void dequantize_nf4(const at::Tensor& packed, const at::Tensor& absmax, const at::Tensor& nf4_code, at::Tensor out) {
  at::Tensor flat = out.view({-1});
  const int64_t n = flat.numel();
#ifdef LEMA_WITH_CUDA
  cuda::OutType type;
  if (kernel_output(out, &type) && kernel_input(packed, out, at::kByte) && kernel_input(absmax, out, at::kFloat) &&
      kernel_input(nf4_code, out, at::kFloat) && packed.numel() >= (n + 1) / 2 &&
      absmax.numel() >= ceil_div(n, kNf4BlockSize)) {
    cuda::dequantize_nf4(packed.data_ptr<uint8_t>(), absmax.data_ptr<float>(), nf4_code.data_ptr<float>(),
                         out.data_ptr(), type, n, current_stream(out));
    check_launch("dequantize_nf4");
    return;
  }
#endif
  // Chunks of whole blocks (and whole bytes): kDequantChunkElements is a
  // multiple of 64.
  for (int64_t e = 0; e < n; e += kDequantChunkElements) {
    const int64_t m = std::min(kDequantChunkElements, n - e);
    const int64_t blocks = ceil_div(m, kNf4BlockSize);
    const at::Tensor p = packed.narrow(0, e / 2, ceil_div(m, 2));
    // [bytes, 2]: the high nibble is the earlier element.
    at::Tensor idx = at::stack({at::bitwise_right_shift(p, 4), at::bitwise_and(p, 15)}, 1).view({-1});
    if (idx.numel() < blocks * kNf4BlockSize) idx = at::constant_pad_nd(idx, {0, blocks * kNf4BlockSize - idx.numel()}, 0);
    const at::Tensor vals = nf4_code.index_select(0, idx.to(at::kLong)).view({blocks, kNf4BlockSize}) *
                            absmax.narrow(0, e / kNf4BlockSize, blocks).view({blocks, 1});
    flat.narrow(0, e, m).copy_(vals.view({-1}).narrow(0, 0, m));
  }
}

at::Tensor nf4_absmax_from_double_quant(const at::Tensor& q, const at::Tensor& scale, const at::Tensor& offset) {
  const int64_t nb = q.numel();
  const int64_t groups = ceil_div(nb, kNf4DqBlockSize);
#ifdef LEMA_WITH_CUDA
  if (q.is_cuda() && q.is_contiguous() && q.scalar_type() == at::kChar && kernel_input(scale, q, at::kFloat) &&
      kernel_input(offset, q, at::kFloat) && scale.numel() >= groups && offset.numel() >= 1) {
    at::Tensor absmax = at::empty({nb}, q.options().dtype(at::kFloat));
    cuda::nf4_absmax_from_double_quant(q.data_ptr<int8_t>(), scale.data_ptr<float>(), offset.data_ptr<float>(),
                                       absmax.data_ptr<float>(), nb, current_stream(q));
    check_launch("nf4_absmax_from_double_quant");
    return absmax;
  }
#endif
  at::Tensor v = q.to(at::kFloat);
  if (v.numel() < groups * kNf4DqBlockSize) v = at::constant_pad_nd(v, {0, groups * kNf4DqBlockSize - nb}, 0);
  // Two separate ops (no fused multiply-add): the reference rounds twice.
  const at::Tensor scaled = v.view({groups, kNf4DqBlockSize}) * scale.view({groups, 1});
  return (scaled + offset).view({-1}).narrow(0, 0, nb);
}

void dequantize_int8(const at::Tensor& q, const at::Tensor& scale, at::Tensor out) {
  const int64_t rows = q.size(0), cols = q.size(1);
#ifdef LEMA_WITH_CUDA
  cuda::OutType type;
  if (kernel_output(out, &type) && kernel_input(q, out, at::kChar) && kernel_input(scale, out, at::kFloat) &&
      out.numel() == rows * cols && scale.numel() >= rows) {
    cuda::dequantize_int8(q.data_ptr<int8_t>(), scale.data_ptr<float>(), out.data_ptr(), type, rows, cols,
                          current_stream(out));
    check_launch("dequantize_int8");
    return;
  }
#endif
  dequantize_rows(rows, cols, scale, out, [&](int64_t r, int64_t nr) { return q.narrow(0, r, nr).to(at::kFloat); });
}

void dequantize_fp8(const at::Tensor& q, const at::Tensor& scale, const at::Tensor& values, at::Tensor out) {
  const int64_t rows = q.size(0), cols = q.size(1);
#ifdef LEMA_WITH_CUDA
  cuda::OutType type;
  if (kernel_output(out, &type) && kernel_input(q, out, at::kByte) && kernel_input(scale, out, at::kFloat) &&
      kernel_input(values, out, at::kFloat) && values.numel() == 256 && out.numel() == rows * cols &&
      scale.numel() >= rows) {
    cuda::dequantize_fp8(q.data_ptr<uint8_t>(), scale.data_ptr<float>(), values.data_ptr<float>(), out.data_ptr(),
                         type, rows, cols, current_stream(out));
    check_launch("dequantize_fp8");
    return;
  }
#endif
  dequantize_rows(rows, cols, scale, out, [&](int64_t r, int64_t nr) {
    return values.index_select(0, q.narrow(0, r, nr).reshape({-1}).to(at::kLong)).view({nr, cols});
  });
}

Result<LayerWeights> dequantize_layer(const ModelConfig& config, const QuantLayerFormat& format,
                                      const at::Tensor& bytes, at::Tensor& work) {
  if (bytes.scalar_type() != at::kByte || bytes.numel() != format.stored_bytes) {
    return Status::internal("dequantize_layer: the layer's bytes are not its stored range");
  }
  const std::vector<std::string> suffixes = layer_tensor_suffixes(config);
  const auto shapes = layer_tensor_shapes(config);
  const auto& st = format.stored;
  size_t k = 0;
  int64_t offset = 0;
  for (size_t i = 0; i < suffixes.size(); ++i) {
    const int64_t n = numel_of(shapes[i]);
    if (k >= st.size() || st[k].suffix != suffixes[i]) {
      return Status::internal("dequantize_layer: stored tensors out of order at " + suffixes[i]);
    }
    at::Tensor dst = work.narrow(0, offset, n);
    if (!is_quantized_layer_tensor(suffixes[i])) {
      LEMA_ASSIGN_OR_RETURN(at::ScalarType type, scalar_type_of(st[k].dtype, "layer tensor " + st[k].suffix));
      dst.copy_(typed(bytes, st[k], type));
      k += 1;
    } else if (format.quant == QuantType::kInt8) {
      dequantize_int8(typed(bytes, st[k], at::kChar).view(shapes[i]), typed(bytes, st[k + 1], at::kFloat),
                      dst.view(shapes[i]));
      k += 2;
    } else if (format.quant == QuantType::kFp8) {
      dequantize_fp8(typed(bytes, st[k], at::kByte).view(shapes[i]), typed(bytes, st[k + 1], at::kFloat),
                     format.fp8_values, dst.view(shapes[i]));
      k += 2;
    } else if (format.quant == QuantType::kNf4) {
      dequantize_nf4(typed(bytes, st[k], at::kByte), typed(bytes, st[k + 1], at::kFloat), format.nf4_code, dst);
      k += 2;
    } else {
      const at::Tensor absmax = nf4_absmax_from_double_quant(
          typed(bytes, st[k + 1], at::kChar), typed(bytes, st[k + 2], at::kFloat), typed(bytes, st[k + 3], at::kFloat));
      dequantize_nf4(typed(bytes, st[k], at::kByte), absmax, format.nf4_code, dst);
      k += 4;
    }
    offset += n;
  }
  if (k != st.size() || offset != work.numel()) return Status::internal("dequantize_layer: the layout does not cover the layer");
  return InMemoryLayerSource::views_of_buffer(config, work);
}

Status check_quant_scales(const QuantLayerFormat& format, const uint8_t* layer_bytes, const std::string& path,
                          int64_t layer) {
  for (const LayerTensor& t : format.stored) {
    if (t.dtype != DType::kF32 || !is_scale_suffix(t.suffix)) continue;
    const uint8_t* p = layer_bytes + t.offset;
    for (uint64_t i = 0; i < t.nbytes / 4; ++i) {
      float v;
      std::memcpy(&v, p + 4 * i, 4);
      if (!std::isfinite(v) || v < 0.0f) {
        return Status::corruption(path + ": tensor '" + layer_tensor_name(layer, t.suffix) + "' holds " + std::to_string(v) + " at element " +
                                  std::to_string(i) + " (scales are finite and >= 0): the file is corrupt; convert the model again");
      }
    }
  }
  return Status();
}

}  // namespace lema::engine
