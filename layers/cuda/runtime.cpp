#include "layers/cuda/runtime.h"

#include <cuda_runtime.h>

#include <new>

#include "layers/cuda/check.h"

namespace tr::cuda {

namespace {
// The first query's answer, kept: cudaGetDeviceCount initialises the runtime once, and its
// failure (no driver) must not be retried, and re-reported, on every call.
struct Discovery {
  int count = 0;
  std::string reason;
};
const Discovery& discovery() {
  static const Discovery d = [] {
    Discovery r;
    const cudaError_t err = cudaGetDeviceCount(&r.count);
    if (err != cudaSuccess) {
      r.count = 0;
      r.reason = cudaGetErrorString(err);
      cudaGetLastError();  // clear it, so that later calls do not report it again
    } else if (r.count == 0) {
      r.reason = "no CUDA device present";
    }
    return r;
  }();
  return d;
}
}  // namespace

int device_count() noexcept {
  try {
    return discovery().count;
  } catch (...) {
    return 0;
  }
}

std::string unavailable_reason() {
  return discovery().reason;
}

int current_device() {
  int d = 0;
  TR_CUDA_CHECK(cudaGetDevice(&d));
  return d;
}

std::string device_name() {
  cudaDeviceProp prop{};
  TR_CUDA_CHECK(cudaGetDeviceProperties(&prop, current_device()));
  return prop.name;
}

void set_device(int device) {
  TR_CUDA_CHECK(cudaSetDevice(device));
}

DeviceGuard::DeviceGuard(int device) : previous_(current_device()) {
  if (device != previous_) TR_CUDA_CHECK(cudaSetDevice(device));
}

DeviceGuard::~DeviceGuard() {
  cudaSetDevice(previous_);
}

void* malloc_device(std::size_t bytes) {
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    throw std::bad_alloc();
  }
  TR_CUDA_CHECK(err);
  return p;
}

void free_device(void* ptr) noexcept {
  cudaFree(ptr);
}

void copy(void* dst, const void* src, std::size_t bytes) {
  if (bytes == 0) return;
  TR_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault));
}

void copy_async(void* dst, const void* src, std::size_t bytes) {
  if (bytes == 0) return;
  TR_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, 0));
}

bool is_device_pointer(const void* ptr) {
  if (ptr == nullptr || device_count() == 0) return false;
  cudaPointerAttributes a{};
  if (cudaPointerGetAttributes(&a, ptr) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

void memset_zero(void* ptr, std::size_t bytes) {
  if (bytes == 0) return;
  TR_CUDA_CHECK(cudaMemsetAsync(ptr, 0, bytes, 0));
}

void synchronize() {
  TR_CUDA_CHECK(cudaDeviceSynchronize());
}

}  // namespace tr::cuda
