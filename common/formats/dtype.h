// Element types of model tensors (the safetensors set) and exact casts
// between the floating-point ones. Plain functions; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/base/status.h"

namespace lema {

enum class DType { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

// Bytes per element.
size_t dtype_size(DType dtype);
// The safetensors name: "F32", "BF16", "BOOL", ...
const char* dtype_name(DType dtype);
// Parses a safetensors dtype name (exact, upper case).
Result<DType> parse_dtype(const std::string& name);
// Parses a user's name: bf16|bfloat16, fp16|f16|float16|half, fp32|f32|float32|float,
// fp64|f64|float64|double; also the safetensors names.
Result<DType> parse_dtype_alias(const std::string& name);
// The name transformers uses in config.json torch_dtype ("bfloat16"), or
// nullptr for non-float types.
const char* dtype_torch_name(DType dtype);
bool dtype_is_float(DType dtype);

// Scalar casts. Rounding is round-to-nearest-even, NaN stays NaN, overflow
// becomes infinity: bit-identical to torch's .to(dtype) on CPU.
float bf16_to_f32(uint16_t bits);
uint16_t f32_to_bf16(float value);
float f16_to_f32(uint16_t bits);
uint16_t f32_to_f16(float value);

// Casts `n_elems` elements from `src` (of type `from`) to `dst` (of type `to`).
// Float types only (F64, F32, F16, BF16); from == to copies. Casts between
// F16 and BF16 go through F32 (exact, as torch does). F64 -> narrower types
// round once from F64 to F32 and then again to F16/BF16 (documented in
// docs/FORMATS.md; torch rounds F64 -> BF16 directly). `dst` must not
// overlap `src`.
Status convert_dtype(DType from, const void* src, DType to, void* dst, size_t n_elems);

}  // namespace lema
