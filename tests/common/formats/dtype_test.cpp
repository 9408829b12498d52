#include "common/formats/dtype.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

namespace lema {
namespace {

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Independent reference for f32 -> bf16: pick the nearer of the two bf16
// neighbours by exact double arithmetic, ties to the even mantissa.
uint16_t ref_bf16(float f) {
  if (std::isnan(f)) return 0x7FC0;
  uint32_t u = bits(f);
  uint16_t lo = static_cast<uint16_t>(u >> 16);
  if ((u & 0xFFFF) == 0) return lo;
  uint16_t hi = static_cast<uint16_t>(lo + 1);  // next magnitude (may become inf)
  double dlo = std::fabs(static_cast<double>(from_bits(static_cast<uint32_t>(lo) << 16)));
  double dhi = std::fabs(static_cast<double>(from_bits(static_cast<uint32_t>(hi) << 16)));
  if ((hi & 0x7F80) == 0x7F80) dhi = std::ldexp(1.0, 128);  // the value "inf" sits at 2^128 for rounding
  double a = std::fabs(static_cast<double>(f));
  double dl = a - dlo, dh = dhi - a;
  if (dl < dh) return lo;
  if (dh < dl) return hi;
  return (lo & 1) ? hi : lo;
}

TEST(DType, NamesAndSizes) {
  for (DType d : {DType::kF64, DType::kF32, DType::kF16, DType::kBF16, DType::kI64, DType::kI32, DType::kI16,
                  DType::kI8, DType::kU8, DType::kBool}) {
    auto back = parse_dtype(dtype_name(d));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, d);
  }
  EXPECT_EQ(dtype_size(DType::kBF16), 2u);
  EXPECT_EQ(dtype_size(DType::kF64), 8u);
  EXPECT_EQ(dtype_size(DType::kBool), 1u);
  EXPECT_FALSE(parse_dtype("f32").ok());
  EXPECT_FALSE(parse_dtype("F8_E4M3").ok());
  EXPECT_EQ(*parse_dtype_alias("bf16"), DType::kBF16);
  EXPECT_EQ(*parse_dtype_alias("fp16"), DType::kF16);
  EXPECT_EQ(*parse_dtype_alias("fp32"), DType::kF32);
  EXPECT_FALSE(parse_dtype_alias("int4").ok());
}

TEST(DType, Bf16RoundTripAndRounding) {
  for (uint32_t h = 0; h < 65536; ++h) {
    float f = bf16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(f32_to_bf16(f), h);
  }
  std::mt19937 rng(7);
  for (int i = 0; i < 2000000; ++i) {
    float f = from_bits(rng());
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(f))));
      continue;
    }
    ASSERT_EQ(f32_to_bf16(f), ref_bf16(f)) << std::hexfloat << f;
  }
  // Ties: 1 + 2^-8 sits halfway between 1 and 1 + 2^-7 -> even (1).
  EXPECT_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3F80);
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);
}

#if defined(__FLT16_MAX__)
TEST(DType, F16MatchesCompilerFloat16) {
  // _Float16 conversions (libgcc/compiler-rt) are IEEE round-to-nearest-even.
  for (uint32_t h = 0; h < 65536; ++h) {
    uint16_t hb = static_cast<uint16_t>(h);
    _Float16 x;
    std::memcpy(&x, &hb, 2);
    float ref = static_cast<float>(x);
    float got = f16_to_f32(hb);
    if (std::isnan(ref)) {
      EXPECT_TRUE(std::isnan(got));
      continue;
    }
    ASSERT_EQ(bits(got), bits(ref)) << h;
    ASSERT_EQ(f32_to_f16(got), hb);
  }
  std::mt19937 rng(11);
  for (int i = 0; i < 2000000; ++i) {
    float f = from_bits(rng());
    if (i % 2) f = from_bits((rng() & 0x80000000u) | (0x33000000u + rng() % 0x15000000u));  // f16 range
    if (std::isnan(f)) continue;
    _Float16 r = static_cast<_Float16>(f);
    uint16_t rb;
    std::memcpy(&rb, &r, 2);
    ASSERT_EQ(f32_to_f16(f), rb) << std::hexfloat << f;
  }
}
#endif

TEST(DType, ConvertBuffers) {
  std::vector<float> src = {0.0f, -1.5f, 3.14159f, 65504.0f, 1e-7f, 1e30f};
  std::vector<uint16_t> bf(src.size()), hf(src.size());
  ASSERT_TRUE(convert_dtype(DType::kF32, src.data(), DType::kBF16, bf.data(), src.size()).ok());
  ASSERT_TRUE(convert_dtype(DType::kF32, src.data(), DType::kF16, hf.data(), src.size()).ok());
  for (size_t i = 0; i < src.size(); ++i) {
    EXPECT_EQ(bf[i], f32_to_bf16(src[i]));
    EXPECT_EQ(hf[i], f32_to_f16(src[i]));
  }
  std::vector<float> back(src.size());
  ASSERT_TRUE(convert_dtype(DType::kBF16, bf.data(), DType::kF32, back.data(), src.size()).ok());
  for (size_t i = 0; i < src.size(); ++i) EXPECT_EQ(back[i], bf16_to_f32(bf[i]));
  std::vector<double> d(src.size());
  ASSERT_TRUE(convert_dtype(DType::kF32, src.data(), DType::kF64, d.data(), src.size()).ok());
  for (size_t i = 0; i < src.size(); ++i) EXPECT_EQ(d[i], static_cast<double>(src[i]));
  std::vector<int32_t> ints(3);
  EXPECT_FALSE(convert_dtype(DType::kI32, ints.data(), DType::kF32, back.data(), 3).ok());
  EXPECT_TRUE(convert_dtype(DType::kI32, ints.data(), DType::kI32, ints.data() + 0, 0).ok());
}

}  // namespace
}  // namespace lema
