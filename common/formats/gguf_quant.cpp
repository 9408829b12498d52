#include "common/formats/gguf_quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/formats/dtype.h"

namespace lema {
namespace {

constexpr int kBlock = 32;

void put_f16(uint8_t* p, float v) {
  const uint16_t h = f32_to_f16(v);
  std::memcpy(p, &h, 2);
}

float get_f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}

void encode_q8_0_block(const float* x, uint8_t* out) {
  float amax = 0.0f;
  for (int j = 0; j < kBlock; ++j) amax = std::fmax(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  put_f16(out, d);
  for (int j = 0; j < kBlock; ++j) {
    // roundf: halves away from zero, as ggml's reference quantizer.
    out[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::roundf(x[j] * id)));
  }
}

void encode_q4_0_block(const float* x, uint8_t* out) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < kBlock; ++j) {
    if (std::fabs(x[j]) > amax) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  // The signed extreme maps to -8 exactly, so the full range -8..7 is used
  // on the side of the largest value.
  const float d = max / -8.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  put_f16(out, d);
  for (int j = 0; j < kBlock / 2; ++j) {
    // x * id lies in [-8, 8], so + 8.5 is >= 0.5 and truncation is floor.
    const int lo = std::min(15, static_cast<int>(x[j] * id + 8.5f));
    const int hi = std::min(15, static_cast<int>(x[j + kBlock / 2] * id + 8.5f));
    out[2 + j] = static_cast<uint8_t>(lo | (hi << 4));
  }
}

}  // namespace

void gguf_encode(GgmlType type, const float* x, int64_t n, uint8_t* out) {
  switch (type) {
    case GgmlType::kF32:
      std::memcpy(out, x, static_cast<size_t>(n) * 4);
      return;
    case GgmlType::kF16:
      for (int64_t k = 0; k < n; ++k) put_f16(out + 2 * k, x[k]);
      return;
    case GgmlType::kBF16:
      for (int64_t k = 0; k < n; ++k) {
        const uint16_t b = f32_to_bf16(x[k]);
        std::memcpy(out + 2 * k, &b, 2);
      }
      return;
    case GgmlType::kQ8_0:
      for (int64_t b = 0; b < n / kBlock; ++b) encode_q8_0_block(x + b * kBlock, out + b * 34);
      return;
    case GgmlType::kQ4_0:
      for (int64_t b = 0; b < n / kBlock; ++b) encode_q4_0_block(x + b * kBlock, out + b * 18);
      return;
  }
}

std::vector<uint8_t> gguf_encode(GgmlType type, const std::vector<float>& x) {
  std::vector<uint8_t> out(ggml_nbytes(type, static_cast<int64_t>(x.size())));
  gguf_encode(type, x.data(), static_cast<int64_t>(x.size()), out.data());
  return out;
}

void gguf_decode(GgmlType type, const uint8_t* in, int64_t n, float* x) {
  switch (type) {
    case GgmlType::kF32:
      std::memcpy(x, in, static_cast<size_t>(n) * 4);
      return;
    case GgmlType::kF16:
      for (int64_t k = 0; k < n; ++k) x[k] = get_f16(in + 2 * k);
      return;
    case GgmlType::kBF16:
      for (int64_t k = 0; k < n; ++k) {
        uint16_t b;
        std::memcpy(&b, in + 2 * k, 2);
        x[k] = bf16_to_f32(b);
      }
      return;
    case GgmlType::kQ8_0:
      for (int64_t b = 0; b < n / kBlock; ++b) {
        const uint8_t* blk = in + b * 34;
        const float d = get_f16(blk);
        for (int j = 0; j < kBlock; ++j) x[b * kBlock + j] = d * static_cast<float>(static_cast<int8_t>(blk[2 + j]));
      }
      return;
    case GgmlType::kQ4_0:
      for (int64_t b = 0; b < n / kBlock; ++b) {
        const uint8_t* blk = in + b * 18;
        const float d = get_f16(blk);
        for (int j = 0; j < kBlock / 2; ++j) {
          x[b * kBlock + j] = d * static_cast<float>((blk[2 + j] & 0x0F) - 8);
          x[b * kBlock + j + kBlock / 2] = d * static_cast<float>((blk[2 + j] >> 4) - 8);
        }
      }
      return;
  }
}

}  // namespace lema
