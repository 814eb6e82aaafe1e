// Elementwise kernels (bias, add, scale, GELU/ReLU in f32 and bf16 storage), the dropout mask
// (the CPU's Philox counters: bit-identical masks) and its application, the optimizer updates
// (the CPU's element steps), the bf16 conversions and the sum of squares' partials.
//
// The device code and the launch geometry, in a header that also compiles for the host under
// tests/common/cuda_emulation.h (tests/layers/test_elementwise_kernels_emulated.cpp runs these
// kernels on the CPU against the CPU kernels); the launches are in elementwise.cu: grid-stride
// loops of grid_for(n) blocks of kThreads (n: elements, or Philox blocks for the dropout masks),
// kSumBlocks blocks of kThreads for the sums of squares, and the bias gradient through the
// column sums.
#pragma once

#ifndef TR_CUDA_EMULATION
#include <cuda_bf16.h>
#endif

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "layers/cpu/adamw_step.h"
#include "layers/cpu/philox.h"
#include "layers/cuda/device_helpers.cuh"
#include "layers/cuda/kernels.h"
#include "layers/cuda/storage.cuh"

namespace tr::cuda::elementwise {
namespace {  // each translation unit (the CUDA build's, an emulated test's) has its own copy

constexpr float kInvSqrt2 = 0.70710678118654752440f;
constexpr float kInvSqrt2Pi = 0.398942280401432677939946f;

__device__ float normal_cdf(float x) {
  return 0.5f * (1.0f + erff(x * kInvSqrt2));
}
// The tanh GELU's u = sqrt(2/pi) (x + 0.044715 x^3) and du/dx.
constexpr float kSqrt2OverPi = 0.79788456080286535588f;
__device__ __forceinline__ float gelu_tanh_argument(float x) {
  return kSqrt2OverPi * (x + 0.044715f * x * x * x);
}
__device__ __forceinline__ float gelu_tanh_argument_slope(float x) {
  return kSqrt2OverPi * (1.0f + 3.0f * 0.044715f * x * x);
}

// A block per row (grid_for_rows(rows)).
__global__ void bias_add_kernel(float* out, const float* in, const float* bias, i64 rows,
                                i64 cols) {
  TR_ROWS_STRIDE(r, rows) TR_ROW_COLUMNS(c, cols) out[r * cols + c] = in[r * cols + c] + bias[c];
}
__global__ void bias_fill_kernel(float* out, const float* bias, i64 rows, i64 cols) {
  TR_ROWS_STRIDE(r, rows) TR_ROW_COLUMNS(c, cols) out[r * cols + c] = bias[c];
}
// A bias gradient's term of one element (column_sums_kernels.cuh sums them per column).
template <typename DOut>
struct BiasTerms {
  const DOut* dout;
  std::int64_t cols;
  __device__ void operator()(std::int64_t r, std::int64_t c, float* v) const {
    v[0] = load(dout, r * cols + c);
  }
};
// B: float, or bf16 (a bf16 branch added to the f32 residual stream).
template <typename B>
__global__ void add_kernel(float* out, const float* a, const B* b, i64 n) {
  TR_GRID_STRIDE(i, n) out[i] = a[i] + load(b, i);
}
__global__ void add_accumulate_kernel(float* out, const float* a, i64 n) {
  TR_GRID_STRIDE(i, n) out[i] += a[i];
}
__global__ void scale_kernel(float* out, const float* in, float alpha, i64 n) {
  TR_GRID_STRIDE(i, n) out[i] = alpha * in[i];
}
// kTanh: the tanh approximation (model.activation: gelu_tanh), else the exact erf form.
template <bool kTanh = false>
__device__ __forceinline__ float gelu(float x) {
  if constexpr (kTanh) return 0.5f * x * (1.0f + tanhf(gelu_tanh_argument(x)));
  return x * normal_cdf(x);
}
template <bool kTanh = false>
__device__ __forceinline__ float gelu_derivative(float x) {
  if constexpr (kTanh) {
    const float t = tanhf(gelu_tanh_argument(x));
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * gelu_tanh_argument_slope(x);
  }
  return normal_cdf(x) + x * kInvSqrt2Pi * expf(-0.5f * x * x);
}
// The elements of bf16 streams that move eight at a time: whole groups of eight where every
// pointer is 16-byte aligned (the pool's blocks are), else none; the rest one by one.
__host__ __device__ __forceinline__ i64 bf16_vector_groups(i64 n, const void* a, const void* b,
                                                           const void* c = nullptr) {
  const bool aligned = vector_aligned(a) && vector_aligned(b) && (!c || vector_aligned(c));
  return aligned ? n / kBf16PerVector : 0;
}
// The threads such a kernel has work for: a group of eight each, then an element each of the
// tail (one pass after the other), so a launch sized by it leaves no thread idle.
inline i64 bf16_vector_threads(i64 n, const void* a, const void* b, const void* c = nullptr) {
  const i64 groups = bf16_vector_groups(n, a, b, c);
  const i64 tail = n - groups * kBf16PerVector;
  return groups > tail ? groups : tail;
}
// T: float, or bf16 (the feed-forward hidden layer under bf16 activations).
template <typename T, bool kTanh = false>
__global__ void gelu_forward_kernel(T* out, const T* in, i64 n) {
  i64 done = 0;
  if constexpr (std::is_same_v<T, bf16>) {  // the feed-forward hidden layer: the largest stream
    const i64 groups = bf16_vector_groups(n, out, in);
    TR_GRID_STRIDE(g, groups) {
      float v[kBf16PerVector];
      load8(in, g * kBf16PerVector, v);
      for (float& x : v) x = gelu<kTanh>(x);
      store8(out, g * kBf16PerVector, v);
    }
    done = groups * kBf16PerVector;
  }
  TR_GRID_STRIDE(i, n - done) store(out, done + i, gelu<kTanh>(load(in, done + i)));
}
template <typename T, bool kTanh = false>
__global__ void gelu_backward_kernel(T* din, const T* dout, const T* in, i64 n) {
  i64 done = 0;
  if constexpr (std::is_same_v<T, bf16>) {
    const i64 groups = bf16_vector_groups(n, din, dout, in);
    TR_GRID_STRIDE(g, groups) {
      float x[kBf16PerVector], g_out[kBf16PerVector];
      load8(in, g * kBf16PerVector, x);
      load8(dout, g * kBf16PerVector, g_out);
      for (int j = 0; j < kBf16PerVector; ++j) x[j] = g_out[j] * gelu_derivative<kTanh>(x[j]);
      store8(din, g * kBf16PerVector, x);
    }
    done = groups * kBf16PerVector;
  }
  TR_GRID_STRIDE(i, n - done) {
    const i64 k = done + i;
    store(din, k, load(dout, k) * gelu_derivative<kTanh>(load(in, k)));
  }
}
template <typename T>
__global__ void relu_forward_kernel(T* out, const T* in, i64 n) {
  TR_GRID_STRIDE(i, n) {
    const float x = load(in, i);
    store(out, i, x > 0.0f ? x : 0.0f);
  }
}
template <typename T>
__global__ void relu_backward_kernel(T* din, const T* dout, const T* in, i64 n) {
  TR_GRID_STRIDE(i, n) store(din, i, load(in, i) > 0.0f ? load(dout, i) : 0.0f);
}

// One thread per Philox block (four words): position c = offset + i reads word (c & 3) of
// block (c >> 2), as layers/cpu/philox.h lays out.
__global__ void dropout_mask_kernel(std::uint8_t* keep, i64 n, std::uint32_t threshold,
                                    std::uint64_t seed, std::uint64_t stream, std::uint64_t offset,
                                    std::uint64_t first_block, i64 blocks) {
  TR_GRID_STRIDE(b, blocks) {
    const std::uint64_t block = first_block + static_cast<std::uint64_t>(b);
    const cpu::Philox4 r = cpu::philox_block(seed, stream, block);
    for (int lane = 0; lane < 4; ++lane) {
      const std::uint64_t i = block * 4 + static_cast<std::uint64_t>(lane) - offset;
      if (i < static_cast<std::uint64_t>(n)) keep[i] = cpu::dropout_keeps(r.v[lane], threshold);
    }
  }
}
// Philox blocks that a row of K consecutive counters can touch: ceil(K / 4), plus one where the
// row's first counter is not a multiple of 4.
__host__ __device__ inline i64 dropout_blocks_per_row(i64 K) {
  return (K + 3) / 4 + 1;
}
// Consecutive Philox blocks of one row per thread: the row's counter is decoded once for all of
// them (the divisions of that decoding cost as much as a Philox block).
constexpr int kDropoutBlocksPerThread = 4;
__host__ __device__ inline i64 dropout_chunks_per_row(i64 K) {
  return (dropout_blocks_per_row(K) + kDropoutBlocksPerThread - 1) / kDropoutBlocksPerThread;
}
// The threads dropout_mask_strided_kernel takes for `rows` rows of K.
__host__ __device__ inline i64 dropout_strided_threads(i64 rows, i64 K) {
  return rows * dropout_chunks_per_row(K);
}
// The leading indices of `row` (last fastest) as the row's first counter, in the integer type
// U: 32-bit where the mask's row count fits (a 64-bit division costs the GPU tens of
// instructions; there are up to four per row here).
template <typename U>
__device__ std::uint64_t dropout_row_first(U row, const DropoutLayout& layout,
                                           std::uint64_t offset) {
  std::uint64_t first = offset;
  // Unrolled over the four slots with a test: indexing the parameter's arrays by a run-time j
  // would copy them to local memory.
  TR_UNROLL
  for (int j = 3; j >= 0; --j) {
    if (j >= layout.n) continue;
    const U dim = static_cast<U>(layout.dims[j]);
    first += static_cast<std::uint64_t>(row % dim) * layout.strides[j];
    row /= dim;
  }
  return first;
}
// The keep bytes of a block's four words as one little-endian word (lane 0 the lowest byte).
__device__ inline std::uint32_t dropout_keep_word(const cpu::Philox4& r, std::uint32_t threshold) {
  std::uint32_t word = 0;
  for (int lane = 0; lane < 4; ++lane)
    word |= static_cast<std::uint32_t>(cpu::dropout_keeps(r.v[lane], threshold)) << (8 * lane);
  return word;
}
static_assert(kDropoutBlocksPerThread == 4, "the 16-byte store holds four blocks' words");
// One thread per (row, run of kDropoutBlocksPerThread Philox blocks of the row): the row's
// counters are consecutive, so each block gives up to four of its elements, as the CPU reuses a
// block for four consecutive words (one block per element would be four times the Philox work).
// Where the four land in the row at a 4-byte aligned address they are stored as one word.
__global__ void dropout_mask_strided_kernel(std::uint8_t* keep, i64 rows, i64 K,
                                            DropoutLayout layout, std::uint32_t threshold,
                                            std::uint64_t seed, std::uint64_t stream,
                                            std::uint64_t offset) {
  const i64 per_row = dropout_blocks_per_row(K), chunks = dropout_chunks_per_row(K);
  const bool narrow = rows * chunks <= 0xFFFFFFFFll;  // every index below fits 32 bits
  TR_GRID_STRIDE(t, rows * chunks) {
    i64 row, chunk;
    std::uint64_t first;  // the counter of the row's element k = 0
    if (narrow) {
      const auto t32 = static_cast<std::uint32_t>(t), per32 = static_cast<std::uint32_t>(chunks);
      row = t32 / per32;
      chunk = t32 - static_cast<std::uint32_t>(row) * per32;
      first = dropout_row_first(static_cast<std::uint32_t>(row), layout, offset);
    } else {
      row = t / chunks;
      chunk = t % chunks;
      first = dropout_row_first(static_cast<std::uint64_t>(row), layout, offset);
    }
    std::uint8_t* out = keep + row * K;
    // The common case: the run lies whole inside the row at a 16-byte aligned address (K a
    // multiple of 16 and the row's counters starting at a block's first word): one store.
    const std::uint64_t b0 =
        (first >> 2) + static_cast<std::uint64_t>(chunk) * kDropoutBlocksPerThread;
    const std::uint64_t run0 = b0 * 4 - first;  // wraps below 0 for a row's partial first block
    if (b0 * 4 >= first && run0 + 4 * kDropoutBlocksPerThread <= static_cast<std::uint64_t>(K) &&
        reinterpret_cast<std::uintptr_t>(out + run0) % 16 == 0) {
      std::uint32_t w[kDropoutBlocksPerThread];
      for (int j = 0; j < kDropoutBlocksPerThread; ++j)
        w[j] = dropout_keep_word(cpu::philox_block(seed, stream, b0 + j), threshold);
      *reinterpret_cast<uint4*>(out + run0) = make_uint4(w[0], w[1], w[2], w[3]);
      continue;
    }
    for (int j = 0; j < kDropoutBlocksPerThread; ++j) {
      const i64 in_row = chunk * kDropoutBlocksPerThread + j;
      const std::uint64_t block = (first >> 2) + static_cast<std::uint64_t>(in_row);
      if (in_row >= per_row || block * 4 >= first + static_cast<std::uint64_t>(K))
        break;  // past the row's end
      const cpu::Philox4 r = cpu::philox_block(seed, stream, block);
      const std::uint64_t k0 = block * 4 - first;  // wraps below 0 for a row's partial first block
      if (block * 4 >= first && k0 + 4 <= static_cast<std::uint64_t>(K) &&
          reinterpret_cast<std::uintptr_t>(out + k0) % 4 == 0) {
        *reinterpret_cast<std::uint32_t*>(out + k0) = dropout_keep_word(r, threshold);
        continue;
      }
      for (int lane = 0; lane < 4; ++lane) {
        const std::uint64_t k = k0 + static_cast<std::uint64_t>(lane);
        if (k < static_cast<std::uint64_t>(K)) out[k] = cpu::dropout_keeps(r.v[lane], threshold);
      }
    }
  }
}

template <typename T>
__global__ void dropout_apply_kernel(T* out, const T* in, const std::uint8_t* keep, float scale,
                                     i64 n) {
  TR_GRID_STRIDE(i, n) store(out, i, keep[i] ? load(in, i) * scale : 0.0f);
}
// In: float, or bf16 (a bf16 branch's dropout added to the f32 residual stream).
template <typename In>
__global__ void dropout_add_kernel(float* out, const float* skip, const In* in,
                                   const std::uint8_t* keep, float scale, i64 n) {
  TR_GRID_STRIDE(i, n) out[i] = skip[i] + (keep[i] ? load(in, i) * scale : 0.0f);
}

// The CPU kernel's element step (layers/cpu/adamw_step.h) with the same constants from the
// host, so the two devices differ by rounding of fused multiply-adds at most.
__global__ void adamw_kernel(float* param, const float* grad, float* m, float* v, i64 n,
                             cpu::AdamWConstants<float> c) {
  TR_GRID_STRIDE(i, n) cpu::adamw_element(param[i], grad[i], m[i], v[i], c);
}

// SGD with momentum as cpu::sgd_update (dampening 0, not Nesterov).
__global__ void sgd_kernel(float* param, const float* grad, float* buf, i64 n, float neg_lr,
                           float momentum, float weight_decay, bool first_step) {
  TR_GRID_STRIDE(i, n) {
    const float g = grad[i] + weight_decay * param[i];
    float d = g;
    if (buf) {
      d = first_step ? g : momentum * buf[i] + g;
      buf[i] = d;
    }
    param[i] += neg_lr * d;
  }
}

__global__ void f32_to_bf16_kernel(__nv_bfloat16* out, const float* in, i64 n) {
  TR_GRID_STRIDE(i, n) out[i] = __float2bfloat16_rn(in[i]);
}
__global__ void bf16_to_f32_kernel(float* out, const __nv_bfloat16* in, i64 n) {
  TR_GRID_STRIDE(i, n) out[i] = __bfloat162float(in[i]);
}

// Partial sums of squares per block (grid of fixed size: the order depends on n only); the host
// adds the kSumBlocks partials in block order.
constexpr int kSumBlocks = 256;
__global__ void sum_squares_kernel(double* partial, const float* x, i64 n) {
  __shared__ double shared[kThreads / 32];
  double s = 0;
  TR_GRID_STRIDE(i, n) s += static_cast<double>(x[i]) * x[i];
  s = block_sum(s, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

}  // namespace
}  // namespace tr::cuda::elementwise
