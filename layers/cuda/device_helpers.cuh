// Device-side helpers shared by the kernel headers (layers/cuda/*_kernels.cuh): the launch
// geometry of grid-stride loops and the block reductions. No host runtime (streams, memory,
// error checks: launch.cuh), so that the kernels also compile for the host under
// tests/common/cuda_emulation.h.
#pragma once

#ifndef TR_CUDA_EMULATION
#include <vector_types.h>  // dim3
// Loop unrolling for nvcc (the emulation defines these empty: the host compiler knows no
// `#pragma unroll`).
#define TR_UNROLL _Pragma("unroll")
#define TR_UNROLL_4 _Pragma("unroll 4")
#endif

#include <algorithm>
#include <cstdint>

namespace tr::cuda {

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n elements: enough to fill any current GPU, few enough
// that each thread does several elements.
inline unsigned grid_for(std::int64_t n) {
  const std::int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(std::clamp<std::int64_t>(blocks, 1, 65535));
}

// Row loops, for kernels over the rows of a [rows, cols] layout whose rows need decoding (a
// token's id, a position's index): blocks over the rows, each block's threads over a row's
// columns, so that a row is decoded once per block instead of once per element (a 64-bit
// division costs a GPU tens of instructions; in a grid-stride loop over every element that
// arithmetic, not the memory traffic, bounded such kernels). grid_for_rows(rows) blocks of
// kThreads.
inline unsigned grid_for_rows(std::int64_t rows) {
  return static_cast<unsigned>(std::clamp<std::int64_t>(rows, 1, 65535));
}
#define TR_ROWS_STRIDE(r, rows) \
  for (std::int64_t r = blockIdx.x; r < (rows); r += static_cast<std::int64_t>(gridDim.x))
#define TR_ROW_COLUMNS(c, cols) \
  for (std::int64_t c = threadIdx.x; c < (cols); c += static_cast<std::int64_t>(blockDim.x))

#define TR_GRID_STRIDE(i, n)                                                                       \
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<std::int64_t>(blockDim.x) * gridDim.x)

// Anonymous: each translation unit (the CUDA build's, an emulated test's) has its own copy.
namespace {

// Sum over a warp, the same butterfly for every call (deterministic); every lane gets it.
template <typename T>
__device__ T warp_sum(T value) {
  for (int o = 16; o > 0; o >>= 1) value += __shfl_xor_sync(0xffffffffu, value, o);
  return value;
}

// Sum over the block, the same tree for every launch of a given block size (deterministic);
// every thread gets the result. `shared` holds blockDim.x / 32 values.
template <typename T>
__device__ T block_sum(T value, T* shared) {
  value = warp_sum(value);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  __syncthreads();  // shared may still be read by a previous call
  if (lane == 0) shared[warp] = value;
  __syncthreads();
  T total = 0;
  for (int w = 0; w < warps; ++w) total += shared[w];
  return total;
}

template <typename T>
__device__ T block_max(T value, T* shared) {
  for (int o = 16; o > 0; o >>= 1) value = max(value, __shfl_xor_sync(0xffffffffu, value, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) shared[warp] = value;
  __syncthreads();
  T total = shared[0];
  for (int w = 1; w < warps; ++w) total = max(total, shared[w]);
  return total;
}

}  // namespace
}  // namespace tr::cuda
