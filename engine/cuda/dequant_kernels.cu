#include "engine/cuda/dequant_kernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace lema::engine::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kNf4Block = 64;   // elements per absmax (bitsandbytes' blocksize)
constexpr int64_t kDqBlock = 256;   // absmax values per double-quantization scale

template <typename T> __device__ __forceinline__ T from_float(float v);
template <> __device__ __forceinline__ float from_float<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

int blocks_for(int64_t work) {
  // Grid-stride loops: enough blocks to fill the device, no more.
  const int64_t b = (work + kThreads - 1) / kThreads;
  return static_cast<int>(b < 65536 ? (b > 0 ? b : 1) : 65536);
}

// One thread per stored byte: the two elements it holds. __fmul_rn keeps the
// product from being contracted with anything else.
template <typename T>
__global__ void nf4_kernel(const uint8_t* __restrict__ packed, const float* __restrict__ absmax,
                           const float* __restrict__ code, T* __restrict__ out, int64_t n) {
  __shared__ float table[16];
  if (threadIdx.x < 16) table[threadIdx.x] = code[threadIdx.x];
  __syncthreads();
  const int64_t bytes = (n + 1) / 2;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < bytes;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint8_t b = packed[i];
    const int64_t e = 2 * i;  // 64 is even: both elements share one absmax
    const float scale = absmax[e / kNf4Block];
    out[e] = from_float<T>(__fmul_rn(table[b >> 4], scale));
    if (e + 1 < n) out[e + 1] = from_float<T>(__fmul_rn(table[b & 15], scale));
  }
}

__global__ void dq_absmax_kernel(const int8_t* __restrict__ q, const float* __restrict__ scale,
                                 const float* __restrict__ offset, float* __restrict__ absmax, int64_t nb) {
  const float off = offset[0];
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < nb;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    absmax[i] = __fadd_rn(__fmul_rn(static_cast<float>(q[i]), scale[i / kDqBlock]), off);
  }
}

template <typename T>
__global__ void int8_kernel(const int8_t* __restrict__ q, const float* __restrict__ scale, T* __restrict__ out,
                            int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = from_float<T>(__fmul_rn(static_cast<float>(q[i]), scale[i / cols]));
  }
}

template <typename T>
__global__ void fp8_kernel(const uint8_t* __restrict__ q, const float* __restrict__ scale,
                           const float* __restrict__ values, T* __restrict__ out, int64_t rows, int64_t cols) {
  __shared__ float table[256];
  table[threadIdx.x] = values[threadIdx.x];  // kThreads == 256: one entry per thread
  __syncthreads();
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = from_float<T>(__fmul_rn(table[q[i]], scale[i / cols]));
  }
}

}  // namespace

void dequantize_nf4(const uint8_t* packed, const float* absmax, const float* code, void* out, OutType type,
                    int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  const int grid = blocks_for((n + 1) / 2);
  switch (type) {
    case OutType::kF32: nf4_kernel<float><<<grid, kThreads, 0, stream>>>(packed, absmax, code, static_cast<float*>(out), n); break;
    case OutType::kF16: nf4_kernel<__half><<<grid, kThreads, 0, stream>>>(packed, absmax, code, static_cast<__half*>(out), n); break;
    case OutType::kBF16:
      nf4_kernel<__nv_bfloat16><<<grid, kThreads, 0, stream>>>(packed, absmax, code, static_cast<__nv_bfloat16*>(out), n);
      break;
  }
}

void nf4_absmax_from_double_quant(const int8_t* q, const float* scale, const float* offset, float* absmax,
                                  int64_t nb, cudaStream_t stream) {
  if (nb <= 0) return;
  dq_absmax_kernel<<<blocks_for(nb), kThreads, 0, stream>>>(q, scale, offset, absmax, nb);
}

void dequantize_int8(const int8_t* q, const float* scale, void* out, OutType type, int64_t rows, int64_t cols,
                     cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  const int grid = blocks_for(rows * cols);
  switch (type) {
    case OutType::kF32: int8_kernel<float><<<grid, kThreads, 0, stream>>>(q, scale, static_cast<float*>(out), rows, cols); break;
    case OutType::kF16: int8_kernel<__half><<<grid, kThreads, 0, stream>>>(q, scale, static_cast<__half*>(out), rows, cols); break;
    case OutType::kBF16:
      int8_kernel<__nv_bfloat16><<<grid, kThreads, 0, stream>>>(q, scale, static_cast<__nv_bfloat16*>(out), rows, cols);
      break;
  }
}

void dequantize_fp8(const uint8_t* q, const float* scale, const float* values, void* out, OutType type, int64_t rows,
                    int64_t cols, cudaStream_t stream) {
  static_assert(kThreads == 256, "fp8_kernel loads its 256-entry table with one thread per entry");
  if (rows <= 0 || cols <= 0) return;
  const int grid = blocks_for(rows * cols);
  switch (type) {
    case OutType::kF32:
      fp8_kernel<float><<<grid, kThreads, 0, stream>>>(q, scale, values, static_cast<float*>(out), rows, cols);
      break;
    case OutType::kF16:
      fp8_kernel<__half><<<grid, kThreads, 0, stream>>>(q, scale, values, static_cast<__half*>(out), rows, cols);
      break;
    case OutType::kBF16:
      fp8_kernel<__nv_bfloat16><<<grid, kThreads, 0, stream>>>(q, scale, values, static_cast<__nv_bfloat16*>(out), rows,
                                                                cols);
      break;
  }
}

const char* last_error() {
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

}  // namespace lema::engine::cuda
