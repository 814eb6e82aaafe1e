// Launch helpers shared by the .cu files: the compute stream, stream-ordered scratch memory;
// grid sizes and block reductions from device_helpers.cuh.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "layers/cuda/check.h"
#include "layers/cuda/device_helpers.cuh"

namespace tr::cuda {

// Whether `ptr` is 16-byte aligned (the vector loads of the flash kernels, cuDNN's tensors).
inline bool aligned16(const void* ptr) {
  return reinterpret_cast<std::uintptr_t>(ptr) % 16 == 0;
}

// One stream per process for now (see runtime.h).
inline cudaStream_t compute_stream() {
  return 0;
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
    if (bytes == 0) return;
    const cudaError_t err = cudaMallocAsync(&ptr_, bytes, compute_stream());
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      throw OutOfMemory("out of GPU memory: " + std::to_string(bytes >> 20) +
                        " MiB of an op's scratch (attention, conversions) could not be had; lower "
                        "train.micro_batch, or set train.recompute: selective or full");
    }
    TR_CUDA_CHECK(err);
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
