// The materialised attention's device code (layers/cuda/attention.cu launches it): the head
// gathers and scatters between the projection layout [B, T, H*Dh] and head-major [B, H, T, Dh]
// copies (float4 or scalar moves, 32- or 64-bit index arithmetic; with a change of storage to
// or from bf16), and the row kernels, one warp per score row: scale, padding and causal masks,
// softmax and dropout on the probabilities, and the softmax gradient. The products between
// them are cuBLASLt calls (attention.cu).
//
// In a header that also compiles for the host under tests/common/cuda_emulation.h
// (tests/layers/test_attention_kernels_emulated.cpp runs these kernels on the CPU, with CPU
// products in between, against the CPU attention kernels).
#pragma once

#ifndef TR_CUDA_EMULATION
#include <cuda_bf16.h>
#endif

#include <cmath>
#include <cstdint>

#include "layers/cuda/device_helpers.cuh"
#include "layers/cuda/kernels.h"
#include "layers/cuda/storage.cuh"

namespace tr::cuda::attn {
namespace {  // each translation unit (the CUDA build's, an emulated test's) has its own copy

constexpr int kRowWarps = 8;  // score rows per block of the row kernels
constexpr int kRowBlockThreads = kRowWarps * 32;

// Launch geometry: the row kernels take kRowWarps rows per block of kRowBlockThreads; the
// gathers, scatters and elementwise kernels are grid-stride loops (grid_for(n) blocks of
// kThreads, n in moved elements: float4 or scalar).
inline unsigned row_blocks(i64 rows) {
  return static_cast<unsigned>((rows + kRowWarps - 1) / kRowWarps);
}

// How swap_middle moves [B, X, Y, D] floats: as float4 (D % 4 == 0 and both pointers 16-byte
// aligned) or one by one, with 32-bit index arithmetic when the element count allows.
struct SwapPath {
  bool by_four, small;
};
inline SwapPath swap_middle_path(const void* out, const void* in, i64 n, i64 D) {
  const bool by_four = D % 4 == 0 && reinterpret_cast<std::uintptr_t>(out) % 16 == 0 &&
                       reinterpret_cast<std::uintptr_t>(in) % 16 == 0;
  return {by_four, n < (i64{1} << 31)};
}

inline float attention_scale(i64 Dh) {
  return static_cast<float>(1.0 / std::sqrt(static_cast<double>(Dh)));
}

__device__ i64 clamp_i64(i64 x, i64 lo, i64 hi) {
  return x < lo ? lo : (x > hi ? hi : x);
}

__device__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// out[b, y, x, :] = in[b, x, y, :] for in [B, X, Y, D]: heads out of / back into the
// projection layout ([B, T, H, Dh] <-> [B, H, T, Dh]). Moved as float4 where D allows and in
// 32-bit index arithmetic where the size allows: the 64-bit divisions of a per-float version
// made it run at a third of the copy bandwidth (the H100 profile).
template <typename V, typename I>
__global__ void swap_middle_kernel(V* out, const V* in, I B, I X, I Y, I D) {
  const I n = B * X * Y * D;
  for (I idx = blockIdx.x * static_cast<I>(blockDim.x) + threadIdx.x; idx < n;
       idx += static_cast<I>(blockDim.x) * gridDim.x) {
    const I d = idx % D, rest = idx / D;
    const I y = rest % Y, rest2 = rest / Y;
    const I x = rest2 % X, b = rest2 / X;
    out[((b * Y + y) * X + x) * D + d] = in[idx];
  }
}

// swap_middle with a change of storage (float or bf16 each side), rounded as the values move:
// the attention operands gathered into bf16 under bf16 products, and under bf16 activations
// the bf16 projections read and the bf16 results written.
template <typename In, typename Out>
__global__ void swap_middle_as_kernel(Out* out, const In* in, std::uint32_t B, std::uint32_t X,
                                      std::uint32_t Y, std::uint32_t D) {
  const std::uint32_t n = B * X * Y * D;
  for (std::uint32_t idx = blockIdx.x * blockDim.x + threadIdx.x; idx < n;
       idx += blockDim.x * gridDim.x) {
    const std::uint32_t d = idx % D, rest = idx / D;
    const std::uint32_t y = rest % Y, rest2 = rest / Y;
    const std::uint32_t x = rest2 % X, b = rest2 / X;
    store(out, ((b * Y + y) * X + x) * D + d, load(in, idx));
  }
}

// Scores (already scaled) to probabilities in place, row (b, h, i) per warp: keys j >= kv_len[b]
// and, when causal, j > i + q_offset get exactly 0; a row with no visible key is all 0.
// `dropped` (when not null) receives probs * keep * keep_scale, the operand of the PV product.
// `operand16` (when not null) receives the PV product's operand in bf16 (dropped when keep).
__global__ void softmax_rows_kernel(float* probs, float* dropped, __nv_bfloat16* operand16,
                                    const std::int32_t* kv_len, const std::uint8_t* keep,
                                    float keep_scale, i64 rows, i64 H, i64 Tq, i64 Tk, bool causal,
                                    i64 q_offset) {
  const i64 row = blockIdx.x * static_cast<i64>(kRowWarps) + threadIdx.x / 32;
  if (row >= rows) return;
  const int lane = threadIdx.x & 31;
  const i64 i = row % Tq, b = row / (Tq * H);
  const i64 kv = kv_len ? clamp_i64(kv_len[b], 0, Tk) : Tk;
  const i64 limit = causal ? clamp_i64(i + q_offset + 1, 0, kv) : kv;
  float* p = probs + row * Tk;
  float mx = -INFINITY;
  for (i64 j = lane; j < limit; j += 32) mx = fmaxf(mx, p[j]);
  mx = warp_max(mx);
  float sum = 0;
  for (i64 j = lane; j < limit; j += 32) {
    const float e = expf(p[j] - mx);
    p[j] = e;
    sum += e;
  }
  sum = warp_sum(sum);
  const float inv = limit > 0 ? 1.0f / sum : 0.0f;
  for (i64 j = lane; j < Tk; j += 32) {
    const float v = j < limit ? p[j] * inv : 0.0f;
    p[j] = v;
    const float pv = keep ? (keep[row * Tk + j] ? v * keep_scale : 0.0f) : v;
    if (dropped) dropped[row * Tk + j] = pv;
    if (operand16) operand16[row * Tk + j] = __float2bfloat16_rn(pv);
  }
}

// dropped = probs * keep * keep_scale (backward's dV operand).
__global__ void apply_keep_kernel(float* dropped, const float* probs, const std::uint8_t* keep,
                                  float keep_scale, i64 n) {
  TR_GRID_STRIDE(i, n) dropped[i] = keep[i] ? probs[i] * keep_scale : 0.0f;
}

// The dV product's operand in bf16: dropped(P), or P without dropout.
__global__ void dropped_bf16_kernel(__nv_bfloat16* out, const float* probs,
                                    const std::uint8_t* keep, float keep_scale, i64 n) {
  TR_GRID_STRIDE(i, n) {
    const float p = keep ? (keep[i] ? probs[i] * keep_scale : 0.0f) : probs[i];
    out[i] = __float2bfloat16_rn(p);
  }
}

// ds holds d(dropped P) = dout v^T; becomes dS = P * (dP - rowsum(dP * P)), dP = d(dropped P)
// through the mask. `ds16` (when not null) receives dS in bf16, the dq and dk products' operand.
__global__ void softmax_grad_rows_kernel(float* ds, __nv_bfloat16* ds16, const float* probs,
                                         const std::uint8_t* keep, float keep_scale, i64 rows,
                                         i64 Tk) {
  const i64 row = blockIdx.x * static_cast<i64>(kRowWarps) + threadIdx.x / 32;
  if (row >= rows) return;
  const int lane = threadIdx.x & 31;
  float* d = ds + row * Tk;
  const float* p = probs + row * Tk;
  float dot = 0;
  for (i64 j = lane; j < Tk; j += 32) {
    float g = d[j];
    if (keep) g = keep[row * Tk + j] ? g * keep_scale : 0.0f;
    d[j] = g;
    dot += g * p[j];
  }
  dot = warp_sum(dot);
  for (i64 j = lane; j < Tk; j += 32) {
    const float v = p[j] * (d[j] - dot);
    d[j] = v;
    if (ds16) ds16[row * Tk + j] = __float2bfloat16_rn(v);
  }
}

}  // namespace
}  // namespace tr::cuda::attn
