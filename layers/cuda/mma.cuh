// The tensor cores' warp-level product mma.sync.m16n8k16 (bf16 operands, fp32 accumulation)
// with the fragment layout of the PTX ISA, and the loads that fill its fragments from shared
// memory. Unlike WMMA's opaque fragments, every lane knows which elements it holds, so a
// kernel can work on products in registers (FlashAttention-2's softmax on the score
// accumulators, which then become the next product's A operand without leaving the lane).
//
// Lane l holds, with g = l / 4 and t = l % 4 (pairs of bf16 in one 32-bit register, the lower
// index in the low half):
//   A (16 x 16, row-major): a[0] = A[g][2t, 2t+1], a[1] = A[g+8][2t, 2t+1],
//                           a[2] = A[g][2t+8, 2t+9], a[3] = A[g+8][2t+8, 2t+9]
//   B (16 x 8):             b[0] = B[2t, 2t+1][g],  b[1] = B[2t+8, 2t+9][g]
//   C, D (16 x 8, fp32):    c[0], c[1] = C[g][2t, 2t+1], c[2], c[3] = C[g+8][2t, 2t+1]
// Under tests/common/cuda_emulation.h the product is a warp-collective of plain C++
// (emu::mma_m16n8k16), so kernels written on it run on the CPU in CI.
#pragma once

#include <cstdint>
#include <cstring>

#ifndef TR_CUDA_EMULATION
#include <cuda_bf16.h>
#endif

namespace tr::cuda::mma {
namespace {  // each translation unit (the CUDA build's, an emulated test's) has its own copy

using bfloat = __nv_bfloat16;

// c += a b for one 16 x 8 block.
__device__ __forceinline__ void m16n8k16(float c[4], const std::uint32_t a[4],
                                         const std::uint32_t b[2]) {
#ifdef TR_CUDA_EMULATION
  ::tr::emu::mma_m16n8k16(c, a, b);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
  __trap();  // bf16 tensor cores: sm_80 and later (the launchers refuse older devices)
#endif
}

__device__ __forceinline__ std::uint32_t bits(bfloat x) {
#ifdef TR_CUDA_EMULATION
  return x.bits;
#else
  return __bfloat16_as_ushort(x);
#endif
}

// Two bf16 values as one register (lo in the low half).
__device__ __forceinline__ std::uint32_t pair(bfloat lo, bfloat hi) {
  return bits(lo) | (bits(hi) << 16);
}
// Two floats rounded to bf16 (nearest even) as one register.
__device__ __forceinline__ std::uint32_t pack(float lo, float hi) {
  return pair(__float2bfloat16_rn(lo), __float2bfloat16_rn(hi));
}
// Two adjacent bf16 (4-byte aligned) as one register.
__device__ __forceinline__ std::uint32_t load_pair(const bfloat* p) {
#ifdef TR_CUDA_EMULATION
  std::uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
#else
  return *reinterpret_cast<const std::uint32_t*>(p);
#endif
}

// The A fragment of the 16 x 16 block at (row0, k0) of a row-major tile with row stride LD.
template <int LD>
__device__ __forceinline__ void load_a(std::uint32_t a[4], const bfloat* tile, int row0, int k0,
                                       int lane) {
  const bfloat* p = tile + (row0 + lane / 4) * LD + k0 + 2 * (lane % 4);
  a[0] = load_pair(p);
  a[1] = load_pair(p + 8 * LD);
  a[2] = load_pair(p + 8);
  a[3] = load_pair(p + 8 * LD + 8);
}

// The B fragment of B[k][n] = tile[n0 + n][k0 + k]: a tile holding B's transpose row-major (the
// keys of Q K^T), so each register is two adjacent elements of one row.
template <int LD>
__device__ __forceinline__ void load_b_transposed(std::uint32_t b[2], const bfloat* tile, int n0,
                                                  int k0, int lane) {
  const bfloat* p = tile + (n0 + lane / 4) * LD + k0 + 2 * (lane % 4);
  b[0] = load_pair(p);
  b[1] = load_pair(p + 8);
}

// The B fragment of B[k][n] = tile[k0 + k][n0 + n]: a tile holding B row-major (the values of
// P V), each register two elements of one column.
template <int LD>
__device__ __forceinline__ void load_b(std::uint32_t b[2], const bfloat* tile, int k0, int n0,
                                       int lane) {
  const bfloat* p = tile + (k0 + 2 * (lane % 4)) * LD + n0 + lane / 4;
  b[0] = pair(p[0], p[LD]);
  b[1] = pair(p[8 * LD], p[9 * LD]);
}

// The C fragments of the 16 x 8 blocks 2kk and 2kk + 1 (columns 16kk .. 16kk + 15) as the A
// fragment of k block kk, rounded to bf16: the two layouts hold the same elements per lane.
__device__ __forceinline__ void c_to_a(std::uint32_t a[4], const float c0[4], const float c1[4]) {
  a[0] = pack(c0[0], c0[1]);
  a[1] = pack(c0[2], c0[3]);
  a[2] = pack(c1[0], c1[1]);
  a[3] = pack(c1[2], c1[3]);
}

}  // namespace
}  // namespace tr::cuda::mma
