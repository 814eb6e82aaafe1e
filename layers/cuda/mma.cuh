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
// Under tests/common/cuda_emulation.h the product and the loads are warp-collectives of plain
// C++ (emu::mma_m16n8k16, emu::ldmatrix), so kernels written on them run on the CPU in CI.
#pragma once

#include <cstdint>

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

// ldmatrix: `N` (2 or 4) 8 x 8 matrices of bf16 from shared memory in one instruction. Lane
// 8i + r gives `row`, the address of row r of matrix i (8 consecutive bf16, 16-byte aligned);
// lane l receives in r[i] matrix i's row l / 4, elements 2(l % 4) and 2(l % 4) + 1: exactly a
// fragment register's layout above. With Trans, its column l / 4, rows 2(l % 4) and
// 2(l % 4) + 1: the B fragment of a tile stored [k][n]. One instruction per register pair or
// quad, where 32-bit shared loads take one per register (and 16-bit ones two).
template <int N, bool Trans>
__device__ __forceinline__ void ldmatrix(std::uint32_t r[N], const bfloat* row) {
  static_assert((N == 2 || N == 4) && !(Trans && N == 4), "the loads the fragments use");
#ifdef TR_CUDA_EMULATION
  ::tr::emu::ldmatrix(r, N, Trans, row);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const auto address = static_cast<std::uint32_t>(__cvta_generic_to_shared(row));
  if constexpr (N == 4) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(address));
  } else if constexpr (Trans) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(address));
  } else {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(address));
  }
#else
  (void)r, (void)row;
  __trap();  // the kernels built on these run on sm_80 and later (the launchers refuse older)
#endif
}

// The loaders below read tiles in shared memory (ldmatrix's space) whose rows start 16-byte
// aligned (LD a multiple of 8) at columns that are multiples of 8.

// The A fragment of the 16 x 16 block at (row0, k0) of a row-major tile with row stride LD:
// matrices (rows 0-7, cols 0-7), (8-15, 0-7), (0-7, 8-15), (8-15, 8-15) are a[0] .. a[3].
template <int LD>
__device__ __forceinline__ void load_a(std::uint32_t a[4], const bfloat* tile, int row0, int k0,
                                       int lane) {
  static_assert(LD % 8 == 0, "16-byte aligned rows");
  ldmatrix<4, false>(a, tile + (row0 + lane % 16) * LD + k0 + (lane / 16) * 8);
}

// The B fragment of B[k][n] = tile[n0 + n][k0 + k]: a tile holding B's transpose row-major (the
// keys of Q K^T): matrices (rows n0..n0+7, cols k0..k0+7) and (the same rows, k0+8..k0+15).
template <int LD>
__device__ __forceinline__ void load_b_transposed(std::uint32_t b[2], const bfloat* tile, int n0,
                                                  int k0, int lane) {
  static_assert(LD % 8 == 0, "16-byte aligned rows");
  ldmatrix<2, false>(b, tile + (n0 + lane % 8) * LD + k0 + ((lane / 8) % 2) * 8);
}

// The B fragment of B[k][n] = tile[k0 + k][n0 + n]: a tile holding B row-major (the values of
// P V): the transposes of matrices (rows k0..k0+7, cols n0..n0+7) and (k0+8..k0+15, the same).
template <int LD>
__device__ __forceinline__ void load_b(std::uint32_t b[2], const bfloat* tile, int k0, int n0,
                                       int lane) {
  static_assert(LD % 8 == 0, "16-byte aligned rows");
  ldmatrix<2, true>(b, tile + (k0 + lane % 16) * LD + n0);
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
