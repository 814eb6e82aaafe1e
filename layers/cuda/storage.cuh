// Element storage of the kernels that take f32 or bf16 operands (bf16 activations,
// layers/precision.h): values load to float, arithmetic is fp32, stores round to nearest even.
// bf16 pointers are kernels.h's `bf16` (the bits, a std::uint16_t). Device code only: it also
// compiles for the host under tests/common/cuda_emulation.h.
#pragma once

#ifndef TR_CUDA_EMULATION
#include <cuda_bf16.h>
#endif

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

}  // namespace
}  // namespace tr::cuda
