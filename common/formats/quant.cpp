#include "common/formats/quant.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace lema {

namespace {

// The NF4 data type as published (QLoRA appendix E, bitsandbytes'
// get_4bit_type("nf4")): the quantiles of N(0, 1) normalised to [-1, 1],
// with an exact zero.
constexpr double kNf4CodeF64[16] = {
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
};

struct Nf4Tables {
  float code[16];
  float threshold[15];  // midpoints of neighbouring codes, computed in double, stored as fp32
  Nf4Tables() {
    for (int i = 0; i < 16; ++i) code[i] = static_cast<float>(kNf4CodeF64[i]);
    for (int i = 0; i < 15; ++i) threshold[i] = static_cast<float>((kNf4CodeF64[i] + kNf4CodeF64[i + 1]) / 2.0);
  }
};

const Nf4Tables& nf4_tables() {
  static const Nf4Tables t;
  return t;
}

// The index of the nearest code: how many midpoints x lies strictly above,
// so a value on a midpoint takes the lower code (bitsandbytes' decision
// tree compares with '>').
uint8_t nf4_index(float x, const Nf4Tables& t) {
  uint8_t i = 0;
  while (i < 15 && x > t.threshold[i]) ++i;
  return i;
}

int8_t round_int8(float v) {
  // nearbyint in the default rounding mode: ties to even, as torch.round.
  const float r = std::nearbyint(v);
  return static_cast<int8_t>(std::fmax(-kInt8Max, std::fmin(kInt8Max, r)));
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

const char* quant_name(QuantType quant) {
  switch (quant) {
    case QuantType::kNone: return "none";
    case QuantType::kNf4: return "nf4";
    case QuantType::kNf4Dq: return "nf4-dq";
    case QuantType::kInt8: return "int8";
    case QuantType::kFp8: return "fp8";
  }
  return "?";
}

Result<QuantType> parse_quant(const std::string& name, const std::string& where) {
  for (QuantType q : {QuantType::kNone, QuantType::kNf4, QuantType::kNf4Dq, QuantType::kInt8, QuantType::kFp8}) {
    if (name == quant_name(q)) return q;
  }
  return Status::unsupported(where + ": unknown quantization type '" + name +
                             "' (this lema knows none, nf4, nf4-dq, int8, fp8)");
}

const float* nf4_code() { return nf4_tables().code; }

bool is_quantized_layer_tensor(const std::string& suffix) {
  const std::string tail = "_proj.weight";
  return suffix.size() > tail.size() && suffix.compare(suffix.size() - tail.size(), tail.size(), tail) == 0;
}

std::vector<StoredTensorSpec> quant_stored_tensors(QuantType quant, const std::string& name,
                                                   const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  const int64_t nb = ceil_div(n, kNf4BlockSize);
  switch (quant) {
    case QuantType::kNf4:
      return {{name, DType::kU8, {ceil_div(n, 2)}}, {name + ".absmax", DType::kF32, {nb}}};
    case QuantType::kNf4Dq:
      return {{name, DType::kU8, {ceil_div(n, 2)}},
              {name + ".absmax", DType::kI8, {nb}},
              {name + ".absmax_scale", DType::kF32, {ceil_div(nb, kNf4DqBlockSize)}},
              {name + ".absmax_offset", DType::kF32, {1}}};
    case QuantType::kInt8:
      LEMA_CHECK_MSG(shape.size() == 2, "int8 quantization needs a matrix: " + name);
      return {{name, DType::kI8, shape}, {name + ".scale", DType::kF32, {shape[0]}}};
    case QuantType::kFp8:
      LEMA_CHECK_MSG(shape.size() == 2, "fp8 quantization needs a matrix: " + name);
      return {{name, DType::kU8, shape}, {name + ".scale", DType::kF32, {shape[0]}}};
    case QuantType::kNone: break;
  }
  LEMA_CHECK_MSG(false, "quant_stored_tensors: no quantization for " + name);
  return {};
}

void nf4_quantize(const float* x, int64_t n, uint8_t* packed, float* absmax) {
  const Nf4Tables& t = nf4_tables();
  for (int64_t b = 0; b * kNf4BlockSize < n; ++b) {
    const int64_t begin = b * kNf4BlockSize, end = std::min(n, begin + kNf4BlockSize);
    float m = 0.0f;
    for (int64_t i = begin; i < end; ++i) m = std::fmax(m, std::fabs(x[i]));
    absmax[b] = m;
    // bitsandbytes multiplies by the fp32 reciprocal rather than dividing.
    const float inv = m > 0.0f ? 1.0f / m : 0.0f;
    for (int64_t i = begin; i < end; i += 2) {
      const uint8_t hi = m > 0.0f ? nf4_index(x[i] * inv, t) : 7;
      const uint8_t lo = i + 1 < end ? (m > 0.0f ? nf4_index(x[i + 1] * inv, t) : 7) : 0;
      packed[i / 2] = static_cast<uint8_t>(hi << 4 | lo);
    }
  }
}

void nf4_double_quantize(const float* absmax, int64_t nb, int8_t* q, float* scale, float* offset) {
  double sum = 0.0;
  for (int64_t i = 0; i < nb; ++i) sum += absmax[i];
  const float mean = nb > 0 ? static_cast<float>(sum / static_cast<double>(nb)) : 0.0f;
  *offset = mean;
  for (int64_t b = 0; b * kNf4DqBlockSize < nb; ++b) {
    const int64_t begin = b * kNf4DqBlockSize, end = std::min(nb, begin + kNf4DqBlockSize);
    float m = 0.0f;
    for (int64_t i = begin; i < end; ++i) m = std::fmax(m, std::fabs(absmax[i] - mean));
    const float s = m / static_cast<float>(kInt8Max);
    scale[b] = s;
    for (int64_t i = begin; i < end; ++i) q[i] = s > 0.0f ? round_int8((absmax[i] - mean) / s) : 0;
  }
}

void int8_quantize_rows(const float* x, int64_t rows, int64_t cols, int8_t* q, float* scale) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * cols;
    float m = 0.0f;
    for (int64_t c = 0; c < cols; ++c) m = std::fmax(m, std::fabs(row[c]));
    const float s = m / static_cast<float>(kInt8Max);
    scale[r] = s;
    for (int64_t c = 0; c < cols; ++c) q[r * cols + c] = s > 0.0f ? round_int8(row[c] / s) : 0;
  }
}

const float* fp8_e4m3_values() {
  static const std::vector<float> table = [] {
    std::vector<float> t(256);
    for (int code = 0; code < 256; ++code) {
      const int exponent = (code >> 3) & 15, mantissa = code & 7;
      float magnitude;
      if (exponent == 15 && mantissa == 7) {
        magnitude = std::numeric_limits<float>::quiet_NaN();
      } else if (exponent == 0) {
        magnitude = std::ldexp(static_cast<float>(mantissa), -9);  // subnormal: m/8 * 2^-6
      } else {
        magnitude = std::ldexp(static_cast<float>(8 + mantissa), exponent - 10);  // (1 + m/8) * 2^(e-7)
      }
      t[static_cast<size_t>(code)] = code & 0x80 ? -magnitude : magnitude;
    }
    return t;
  }();
  return table.data();
}

uint8_t fp8_e4m3_encode(float v) {
  if (std::isnan(v)) return 0x7F;
  const uint8_t sign = std::signbit(v) ? 0x80 : 0;
  const float a = std::fabs(v);
  if (a >= kFp8E4m3Max) return sign | 0x7E;
  // Bytes 0x00..0x7E are the non-negative values in increasing order: the
  // last one <= a, or the next if nearer; on a tie the even byte (mantissa
  // ending in 0), as round-to-nearest-even does.
  const float* t = fp8_e4m3_values();
  const float* last = std::upper_bound(t, t + 0x7F, a) - 1;
  uint8_t code = static_cast<uint8_t>(last - t);
  const float below = t[code] , above = t[code + 1];
  if (a - below > above - a || (a - below == above - a && (code & 1))) ++code;
  return sign | code;
}

void fp8_quantize_rows(const float* x, int64_t rows, int64_t cols, uint8_t* q, float* scale) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * cols;
    float m = 0.0f;
    for (int64_t c = 0; c < cols; ++c) m = std::fmax(m, std::fabs(row[c]));
    const float s = m / kFp8E4m3Max;
    scale[r] = s;
    for (int64_t c = 0; c < cols; ++c) q[r * cols + c] = s > 0.0f ? fp8_e4m3_encode(row[c] / s) : 0;
  }
}

}  // namespace lema
