// lema's CUDA kernels for the quantized base (docs/STREAMING.md, "Quantized
// base"): one pass from the stored bytes to the compute dtype, where the
// LibTorch path of engine/dequant.cpp takes about five kernels and fp32
// temporaries per chunk. Same bits as that path: fp32 code x fp32 scale
// (no fused multiply-add), then one round-to-nearest-even to the output.
//
// Plain C++ interface (no LibTorch types) so that nvcc compiles this folder
// without LibTorch's headers; engine/dequant.cpp calls it on CUDA tensors.
#pragma once

#include <cstdint>

typedef struct CUstream_st* cudaStream_t;

namespace lema::engine::cuda {

enum class OutType : int { kF32 = 0, kF16 = 1, kBF16 = 2 };

// out[i] = code[nibble i] * absmax[i / 64], i < n; packed holds two
// elements per byte, the high nibble first.
void dequantize_nf4(const uint8_t* packed, const float* absmax, const float* code, void* out, OutType type,
                    int64_t n, cudaStream_t stream);

// absmax[b] = float(q[b]) * scale[b / 256] + offset[0], rounded after each
// operation, b < nb (double-quantized NF4 scales).
void nf4_absmax_from_double_quant(const int8_t* q, const float* scale, const float* offset, float* absmax,
                                  int64_t nb, cudaStream_t stream);

// out[r, c] = float(q[r, c]) * scale[r] (int8 per row).
void dequantize_int8(const int8_t* q, const float* scale, void* out, OutType type, int64_t rows, int64_t cols,
                     cudaStream_t stream);

// out[r, c] = values[q[r, c]] * scale[r] (fp8 E4M3 bytes per row; values:
// the 256 E4M3 values as fp32).
void dequantize_fp8(const uint8_t* q, const float* scale, const float* values, void* out, OutType type, int64_t rows,
                    int64_t cols, cudaStream_t stream);

// The last launch error as text, or nullptr.
const char* last_error();

}  // namespace lema::engine::cuda
