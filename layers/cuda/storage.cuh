// Element storage of the kernels that take f32 or bf16 operands (bf16 activations,
// layers/precision.h): values load to float, arithmetic is fp32, stores round to nearest even.
// bf16 pointers are kernels.h's `bf16` (the bits, a std::uint16_t). Device code only: it also
// compiles for the host under tests/common/cuda_emulation.h.
#pragma once

#ifndef TR_CUDA_EMULATION
#include <cuda_bf16.h>
#endif

#include <cstdint>

#include "layers/cuda/kernels.h"

namespace tr::cuda {
namespace {  // each translation unit (the CUDA build's, an emulated test's) has its own copy

__device__ __forceinline__ float load(const float* p, std::int64_t i) {
  return p[i];
}
__device__ __forceinline__ float load(const bf16* p, std::int64_t i) {
  return __bfloat162float(reinterpret_cast<const __nv_bfloat16*>(p)[i]);
}
__device__ __forceinline__ void store(float* p, std::int64_t i, float v) {
  p[i] = v;
}
__device__ __forceinline__ void store(bf16* p, std::int64_t i, float v) {
  reinterpret_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
}

// Eight bf16 elements from i, 16-byte aligned, as one 16-byte load or store: a bf16 stream moved
// two bytes a thread takes a load instruction per 64 bytes of a warp, this one per 512.
constexpr int kBf16PerVector = 8;
__host__ __device__ __forceinline__ bool vector_aligned(const void* p) {
  return reinterpret_cast<std::uintptr_t>(p) % 16 == 0;
}
__device__ __forceinline__ void load8(const bf16* p, std::int64_t i, float v[kBf16PerVector]) {
  const uint4 raw = *reinterpret_cast<const uint4*>(p + i);
  const auto* h = reinterpret_cast<const __nv_bfloat16*>(&raw);
  for (int j = 0; j < kBf16PerVector; ++j) v[j] = __bfloat162float(h[j]);
}
__device__ __forceinline__ void store8(bf16* p, std::int64_t i, const float v[kBf16PerVector]) {
  uint4 raw;
  auto* h = reinterpret_cast<__nv_bfloat16*>(&raw);
  for (int j = 0; j < kBf16PerVector; ++j) h[j] = __float2bfloat16_rn(v[j]);
  *reinterpret_cast<uint4*>(p + i) = raw;
}

}  // namespace
}  // namespace tr::cuda
