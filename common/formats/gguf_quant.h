// Encoders for the GGUF tensor types lema writes, following the block
// formats of ggml's specification:
//   q8_0: blocks of 32 values -> fp16 d = amax / 127, then 32 int8
//         q = round(x / d) (34 bytes).
//   q4_0: blocks of 32 values -> fp16 d = m / -8 where m is the value of
//         largest magnitude (with its sign), then 16 bytes of nibbles
//         q = min(15, floor(x / d + 8.5)); byte j holds value j in its low
//         nibble and value j + 16 in its high nibble (18 bytes).
//   f16, bf16: round to nearest even (dtype.h); f32 as is.
// The decoders are the exact inverses used by llama.cpp (x = d * q for
// q8_0, x = d * (q - 8) for q4_0), for tests and error measurements.
// Plain functions; thread-safe.
#pragma once

#include <cstdint>
#include <vector>

#include "common/formats/gguf_writer.h"

namespace lema {

// Encodes `n` floats as `type` into `out` (ggml_nbytes(type, n) bytes).
// REQUIRES: n is a multiple of ggml_block_elems(type).
void gguf_encode(GgmlType type, const float* x, int64_t n, uint8_t* out);
std::vector<uint8_t> gguf_encode(GgmlType type, const std::vector<float>& x);
// Decodes `n` values of `type` from `in` into `x`.
void gguf_decode(GgmlType type, const uint8_t* in, int64_t n, float* x);

}  // namespace lema
