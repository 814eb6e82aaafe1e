// Launch helpers shared by the .cu files: grid sizes, the compute stream, block reductions.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "layers/cuda/check.h"

namespace tr::cuda {

// One stream per process for now (see runtime.h).
inline cudaStream_t compute_stream() {
  return 0;
}

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n elements: enough to fill any current GPU, few enough
// that each thread does several elements.
inline unsigned grid_for(std::int64_t n) {
  const std::int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(std::clamp<std::int64_t>(blocks, 1, 65535));
}

#define TR_GRID_STRIDE(i, n)                                                                       \
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<std::int64_t>(blockDim.x) * gridDim.x)

// Sum over the block, the same tree for every launch of a given block size (deterministic);
// every thread gets the result. `shared` holds blockDim.x / 32 values.
template <typename T>
__device__ T block_sum(T value, T* shared) {
  for (int o = 16; o > 0; o >>= 1) value += __shfl_xor_sync(0xffffffffu, value, o);
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

// Temporary device memory of one op, stream-ordered (cudaMallocAsync on the compute stream):
// no device synchronisation, and the pool keeps freed blocks for the next step (its release
// threshold is raised once, so that synchronisations do not hand the memory back).
class StreamScratch {
 public:
  explicit StreamScratch(std::size_t bytes) {
    static const bool pool_kept = [] {
      int device = 0;
      cudaMemPool_t pool;
      TR_CUDA_CHECK(cudaGetDevice(&device));
      TR_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
      std::uint64_t keep_all = ~std::uint64_t{0};
      TR_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep_all));
      return true;
    }();
    (void)pool_kept;
    if (bytes > 0) TR_CUDA_CHECK(cudaMallocAsync(&ptr_, bytes, compute_stream()));
  }
  ~StreamScratch() {
    if (ptr_) cudaFreeAsync(ptr_, compute_stream());
  }
  StreamScratch(const StreamScratch&) = delete;
  StreamScratch& operator=(const StreamScratch&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_ = nullptr;
};

}  // namespace tr::cuda
