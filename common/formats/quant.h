// The quantized frozen base (docs/FORMATS.md, "Quantized layers"): what a
// quantized projection weight is stored as, and the quantizers that write
// it (convert and model init run them on the CPU; the engine dequantizes on
// the device, engine/dequant.h).
//
// NF4 follows the bitsandbytes layout: the tensor flattened, blocks of 64,
// absmax (fp32) per block, each value x / absmax replaced by the index of
// the nearest of the 16 published NF4 code values (ties to the lower one),
// two indices per byte, the first element in the high nibble. Double
// quantization (nf4-dq) stores the absmax vector as int8 in blocks of 256:
// the mean of all absmax is subtracted (the offset), each block keeps one
// fp32 scale (max |centered| / 127). int8: per output row, scale = absmax /
// 127, q = round-half-even(x / scale). fp8: per output row, scale = absmax /
// 448, q = x / scale as an OCP FP8 E4M3 byte (bias 7, no infinities,
// S.1111.111 the only NaN, largest finite 448), nearest with ties to even,
// beyond 448 saturated to +-448.
//
// Plain functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/formats/dtype.h"

namespace lema {

enum class QuantType { kNone, kNf4, kNf4Dq, kInt8, kFp8 };

// "none", "nf4", "nf4-dq", "int8", "fp8"
const char* quant_name(QuantType quant);
// The inverse; anything else is refused naming it and `where`.
Result<QuantType> parse_quant(const std::string& name, const std::string& where);

constexpr int64_t kNf4BlockSize = 64;     // weights per absmax
constexpr int64_t kNf4DqBlockSize = 256;  // absmax values per fp32 scale (double quantization)
constexpr int64_t kInt8Max = 127;
constexpr float kFp8E4m3Max = 448.0f;
// The engine dequantizes a projection this many weights at a time, so its
// temporaries (codes as int64 indices, fp32 values and products: about
// kDequantTempBytesPerWeight each) stay small next to the work buffer.
constexpr int64_t kDequantChunkElements = int64_t{1} << 22;
constexpr int64_t kDequantTempBytesPerWeight = 20;

// The 16 NF4 code values (QLoRA, appendix E; bitsandbytes' table), as fp32.
const float* nf4_code();

// True for a layer tensor suffix the quantizer stores quantized: the seven
// projection weights (`*_proj.weight`); norms, biases, embedding and head
// stay in their dtype.
bool is_quantized_layer_tensor(const std::string& suffix);

// One tensor as stored: the weight itself (packed codes) and its companions.
struct StoredTensorSpec {
  std::string name;  // "...q_proj.weight", "...q_proj.weight.absmax", ...
  DType dtype = DType::kU8;
  std::vector<int64_t> shape;
  bool any_float = false;  // an unquantized tensor: any float dtype (dtype is then only a default)
};
// The stored tensors of logical tensor `name` [shape] under `quant`:
//   nf4:    name U8 [ceil(n/2)], name.absmax F32 [ceil(n/64)]
//   nf4-dq: name U8 [ceil(n/2)], name.absmax I8 [ceil(n/64)],
//           name.absmax_scale F32 [ceil(n/64/256)], name.absmax_offset F32 [1]
//   int8:   name I8 [rows, cols], name.scale F32 [rows]
//   fp8:    name U8 [rows, cols] (E4M3 bytes), name.scale F32 [rows]
// REQUIRES: quant != kNone; int8 and fp8 need a 2-D shape.
std::vector<StoredTensorSpec> quant_stored_tensors(QuantType quant, const std::string& name,
                                                   const std::vector<int64_t>& shape);

// NF4 of x[0..n): packed [ceil(n/2)], absmax [ceil(n/64)]. A block of zeros
// stores absmax 0 and code 7 (the value 0). Chunks may be quantized apart
// when every chunk but the last starts and ends on a block boundary.
void nf4_quantize(const float* x, int64_t n, uint8_t* packed, float* absmax);
// Double quantization of absmax[0..nb): q [nb], scale [ceil(nb/256)],
// *offset = fp32(mean in double).
void nf4_double_quantize(const float* absmax, int64_t nb, int8_t* q, float* scale, float* offset);
// int8 per row of x [rows, cols]: q [rows * cols], scale [rows].
void int8_quantize_rows(const float* x, int64_t rows, int64_t cols, int8_t* q, float* scale);
// fp8 (E4M3) per row of x [rows, cols]: q [rows * cols], scale [rows].
void fp8_quantize_rows(const float* x, int64_t rows, int64_t cols, uint8_t* q, float* scale);
// The 256 E4M3 values by byte (NaN for 0x7F and 0xFF), as fp32.
const float* fp8_e4m3_values();
// The E4M3 byte nearest to v (ties to the even byte), +-448 beyond it, the
// NaN byte for NaN.
uint8_t fp8_e4m3_encode(float v);

}  // namespace lema
