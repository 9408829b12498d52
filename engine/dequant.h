// The quantized base on the device (docs/STREAMING.md, "Quantized base"):
// a layer travels as the bytes the file stores (NF4 / int8 codes, scales,
// norms) and becomes its compute-dtype weights right before its GEMMs, in a
// work buffer the LayerStore owns. The maths is plain LibTorch ops, on the
// CPU or CUDA alike; each dequantize_* function is the unit a CUDA kernel
// may replace (same arguments, same bits: fp32 code x fp32 scale, then one
// rounding to the output dtype).
//
// Plain functions; thread-safe (they only read their inputs).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/formats/layer_file.h"
#include "engine/llama_model.h"

namespace lema::engine {

// How every layer of a quantized file is stored (all layers are alike).
struct QuantLayerFormat {
  QuantType quant = QuantType::kNone;
  std::vector<LayerTensor> stored;  // offsets relative to the layer's first byte
  int64_t stored_bytes = 0;         // one layer's byte range
  at::Tensor nf4_code;              // [16] fp32 on the compute device (set by the store)
  at::Tensor fp8_values;            // [256] fp32 E4M3 values on the compute device (set by the store)
};

// REQUIRES: file.quant() != kNone. Checks every layer has layer 0's layout.
Result<QuantLayerFormat> quant_layer_format(const LayerFile& file);

// out [n] (any float dtype) = fp32(code[nibble] * absmax[block]) rounded once.
// packed: [ceil(n/2)] uint8, high nibble first; absmax: [ceil(n/64)] fp32;
// nf4_code: [16] fp32. All on out's device.
void dequantize_nf4(const at::Tensor& packed, const at::Tensor& absmax, const at::Tensor& nf4_code, at::Tensor out);
// The absmax of a double-quantized NF4 tensor: fp32(fp32(q * scale[block]) + offset).
// q: [nb] int8, scale: [ceil(nb/256)] fp32, offset: [1] fp32 -> [nb] fp32.
at::Tensor nf4_absmax_from_double_quant(const at::Tensor& q, const at::Tensor& scale, const at::Tensor& offset);
// out [rows, cols] = fp32(q * scale[row]) rounded once. q: [rows, cols] int8, scale: [rows] fp32.
void dequantize_int8(const at::Tensor& q, const at::Tensor& scale, at::Tensor out);
// out [rows, cols] = fp32(values[q] * scale[row]) rounded once. q: [rows, cols]
// uint8 E4M3 bytes, scale: [rows] fp32, values: [256] fp32 (fp8_e4m3_values()).
void dequantize_fp8(const at::Tensor& q, const at::Tensor& scale, const at::Tensor& values, at::Tensor out);

// A layer's weights from its stored bytes: bytes [stored_bytes] uint8 on
// the device -> work [layer_numel] (compute dtype, same device, the layer's
// tensors packed in layer_tensor_names() order) -> views into work.
Result<LayerWeights> dequantize_layer(const ModelConfig& config, const QuantLayerFormat& format,
                                      const at::Tensor& bytes, at::Tensor& work);

// Host-side check of one layer's scales as read (absmax, scale, their
// double-quantization scale and offset must be finite and >= 0): a corrupt
// file is refused naming the file and the tensor.
Status check_quant_scales(const QuantLayerFormat& format, const uint8_t* layer_bytes, const std::string& path,
                          int64_t layer);

}  // namespace lema::engine
