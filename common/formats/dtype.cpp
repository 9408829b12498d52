#include "common/formats/dtype.h"

#include <cmath>
#include <cstring>

namespace lema {

namespace {
struct DTypeEntry {
  DType dtype;
  const char* name;
  size_t size;
  const char* torch_name;
};
constexpr DTypeEntry kDTypes[] = {
    {DType::kF64, "F64", 8, "float64"}, {DType::kF32, "F32", 4, "float32"},
    {DType::kF16, "F16", 2, "float16"}, {DType::kBF16, "BF16", 2, "bfloat16"},
    {DType::kI64, "I64", 8, nullptr},   {DType::kI32, "I32", 4, nullptr},
    {DType::kI16, "I16", 2, nullptr},   {DType::kI8, "I8", 1, nullptr},
    {DType::kU8, "U8", 1, nullptr},     {DType::kBool, "BOOL", 1, nullptr},
};

const DTypeEntry& entry(DType dtype) {
  for (const auto& e : kDTypes) {
    if (e.dtype == dtype) return e;
  }
  LEMA_CHECK_MSG(false, "unknown DType value");
  return kDTypes[0];
}

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
}  // namespace

size_t dtype_size(DType dtype) { return entry(dtype).size; }
const char* dtype_name(DType dtype) { return entry(dtype).name; }
const char* dtype_torch_name(DType dtype) { return entry(dtype).torch_name; }
bool dtype_is_float(DType dtype) { return entry(dtype).torch_name != nullptr; }

Result<DType> parse_dtype(const std::string& name) {
  for (const auto& e : kDTypes) {
    if (name == e.name) return e.dtype;
  }
  return Status::invalid_argument("unknown dtype '" + name +
                                  "' (known: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)");
}

Result<DType> parse_dtype_alias(const std::string& name) {
  if (name == "bf16" || name == "bfloat16") return DType::kBF16;
  if (name == "fp16" || name == "f16" || name == "float16" || name == "half") return DType::kF16;
  if (name == "fp32" || name == "f32" || name == "float32" || name == "float") return DType::kF32;
  if (name == "fp64" || name == "f64" || name == "float64" || name == "double") return DType::kF64;
  auto st = parse_dtype(name);
  if (st.ok()) return st;
  return Status::invalid_argument("unknown dtype '" + name + "' (use bf16, fp16 or fp32)");
}

float bf16_to_f32(uint16_t bits) { return float_of(static_cast<uint32_t>(bits) << 16); }

uint16_t f32_to_bf16(float value) {
  uint32_t u = bits_of(value);
  // torch (c10/util/BFloat16.h round_to_nearest_even): NaN -> 0x7FC0.
  if (std::isnan(value)) return 0x7FC0;
  uint32_t rounding_bias = ((u >> 16) & 1u) + 0x7FFFu;
  return static_cast<uint16_t>((u + rounding_bias) >> 16);
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t mant = h & 0x3FFu;
  if (exp == 0) {
    if (mant == 0) return float_of(sign);
    // Subnormal: value = mant * 2^-24, exactly representable in f32.
    float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  if (exp == 0x1F) return float_of(sign | 0x7F800000u | (mant << 13));
  return float_of(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t f32_to_f16(float value) {
  uint32_t u = bits_of(value);
  uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  uint32_t abs = u & 0x7FFFFFFFu;
  if (abs >= 0x7F800000u) {
    // Inf stays Inf; NaN keeps a quiet NaN with the top mantissa bits.
    if (abs == 0x7F800000u) return sign | 0x7C00u;
    return static_cast<uint16_t>(sign | 0x7E00u | ((abs >> 13) & 0x3FFu));
  }
  if (abs >= 0x477FF000u) return sign | 0x7C00u;  // rounds to >= 65520: overflow
  if (abs < 0x38800000u) {
    // Result is subnormal (or zero) in f16: value / 2^-24 rounded to nearest even.
    // Adding 0.5f (2^-1) shifts the mantissa so the FPU's RNE does the rounding.
    float f = float_of(abs);
    float shifted = f * 16777216.0f;    // * 2^24, exact (power of two, no overflow here)
    float r = std::nearbyint(shifted);  // current rounding mode: nearest-even by default
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(r));
  }
  // Normal: rebias exponent, round 23 -> 10 mantissa bits to nearest even.
  uint32_t mant_odd = (abs >> 13) & 1u;
  uint32_t rounded = abs + 0xFFFu + mant_odd;
  return static_cast<uint16_t>(sign | ((rounded - 0x38000000u) >> 13));
}

Status convert_dtype(DType from, const void* src, DType to, void* dst, size_t n) {
  if (!dtype_is_float(from) || !dtype_is_float(to)) {
    if (from == to) {
      std::memcpy(dst, src, n * dtype_size(from));
      return Status();
    }
    return Status::unsupported(std::string("no cast from ") + dtype_name(from) + " to " + dtype_name(to) +
                               " (only float types are cast)");
  }
  if (from == to) {
    std::memcpy(dst, src, n * dtype_size(from));
    return Status();
  }
  const auto* s8 = static_cast<const uint8_t*>(src);
  auto* d8 = static_cast<uint8_t*>(dst);
  const size_t ss = dtype_size(from), ds = dtype_size(to);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* sp = s8 + i * ss;
    uint8_t* dp = d8 + i * ds;
    // Load into the widest type needed: F64 source keeps double precision
    // only for an F64 -> F32 / F64 target.
    double wide = 0;
    float narrow = 0;
    bool is_wide = false;
    switch (from) {
      case DType::kF64:
        std::memcpy(&wide, sp, 8);
        is_wide = true;
        break;
      case DType::kF32:
        std::memcpy(&narrow, sp, 4);
        break;
      case DType::kF16: {
        uint16_t h;
        std::memcpy(&h, sp, 2);
        narrow = f16_to_f32(h);
        break;
      }
      case DType::kBF16: {
        uint16_t h;
        std::memcpy(&h, sp, 2);
        narrow = bf16_to_f32(h);
        break;
      }
      default:
        break;
    }
    if (is_wide && to != DType::kF64) narrow = static_cast<float>(wide);
    switch (to) {
      case DType::kF64: {
        double d = is_wide ? wide : static_cast<double>(narrow);
        std::memcpy(dp, &d, 8);
        break;
      }
      case DType::kF32:
        std::memcpy(dp, &narrow, 4);
        break;
      case DType::kF16: {
        uint16_t h = f32_to_f16(narrow);
        std::memcpy(dp, &h, 2);
        break;
      }
      case DType::kBF16: {
        uint16_t h = f32_to_bf16(narrow);
        std::memcpy(dp, &h, 2);
        break;
      }
      default:
        break;
    }
  }
  return Status();
}

}  // namespace lema
