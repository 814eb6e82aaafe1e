// Runtime ISA selection and a small register-tiled GEMM for the CPU kernels.
//
// The project builds for baseline x86-64 (SSE2) unless TRAINER_NATIVE is set. The hot fp32
// loops are therefore compiled twice: a body marked TR_INLINE is instantiated inside a wrapper
// with TR_TARGET_AVX2 (AVX2 + FMA) and inside a plain wrapper, and cpu_has_avx2_fma() picks one
// at run time. Both variants are deterministic; they may differ from each other in the last bit
// (FMA contraction), so results are reproducible per machine, as DESIGN section 3 asks.
//
// The GCC vector extensions below (8 floats / 4 doubles) compile to one AVX register in the AVX2
// variant and to two SSE registers in the baseline one.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#define TR_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define TR_HAVE_ISA_DISPATCH 1
#else
#define TR_TARGET_AVX2
#define TR_HAVE_ISA_DISPATCH 0
#endif
#define TR_INLINE inline __attribute__((always_inline))

namespace tr::cpu {

// True where the CPU runs AVX2 and FMA (decided once). TR_CPU_ISA=baseline in the environment
// forces the baseline variants (to test them on an AVX2 machine).
bool cpu_has_avx2_fma();

namespace simd {

using i64 = std::int64_t;

// 32-byte vectors: 8 floats or 4 doubles. `U` variants are the unaligned-access types.
template <typename T>
struct Vec;
template <>
struct Vec<float> {
  typedef float type __attribute__((vector_size(32)));
  typedef float utype __attribute__((vector_size(32), aligned(4)));
  static constexpr int lanes = 8;
};
template <>
struct Vec<double> {
  typedef double type __attribute__((vector_size(32)));
  typedef double utype __attribute__((vector_size(32), aligned(8)));
  static constexpr int lanes = 4;
};

// C[m, n] = alpha * sum_k A(m, k) B[k, n] for m < M, n < N (overwrites C; row stride ldc).
// A(m, k) = A[m * a_row + k * a_col], so A may be read transposed without a copy.
// B is row-major with row stride ldb; every row must be readable up to N rounded up to the
// vector width (the padding columns are never written to C).
// Each C element is one accumulator summed over k in increasing order: the result depends
// only on the inputs, never on threads or tiling.
template <typename T, int R, int NV>
TR_INLINE void gemm_tile(T* C, i64 ldc, const T* A, i64 a_row, i64 a_col, const T* B, i64 ldb,
                         i64 K, T alpha, int rows, i64 cols) {
  using V = typename Vec<T>::type;
  using VU = typename Vec<T>::utype;
  constexpr int L = Vec<T>::lanes;
  V acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = V{};
  for (i64 k = 0; k < K; ++k) {
    V b[NV];
    for (int v = 0; v < NV; ++v) b[v] = *reinterpret_cast<const VU*>(B + k * ldb + v * L);
    for (int r = 0; r < R; ++r) {
      const T a = A[r * a_row + k * a_col];
      for (int v = 0; v < NV; ++v) acc[r][v] += a * b[v];
    }
  }
  for (int r = 0; r < rows; ++r) {
    T* c = C + r * ldc;
    for (int v = 0; v < NV; ++v) {
      const V out = acc[r][v] * alpha;
      const i64 left = cols - v * L;
      if (left >= L) {
        *reinterpret_cast<VU*>(c + v * L) = out;
      } else if (left > 0) {
        T tmp[L];
        std::memcpy(tmp, &out, sizeof out);
        for (i64 j = 0; j < left; ++j) c[v * L + j] = tmp[j];
      }
    }
  }
}

template <typename T, int NV>
TR_INLINE void gemm_rows(T* C, i64 ldc, const T* A, i64 a_row, i64 a_col, const T* B, i64 ldb,
                         i64 M, i64 K, T alpha, i64 cols) {
  constexpr int R = 4;
  i64 m = 0;
  for (; m + R <= M; m += R)
    gemm_tile<T, R, NV>(C + m * ldc, ldc, A + m * a_row, a_row, a_col, B, ldb, K, alpha, R, cols);
  // Remaining rows: a full-height tile would read A rows past M, so use exact-height tiles.
  switch (M - m) {
    case 3: gemm_tile<T, 3, NV>(C + m * ldc, ldc, A + m * a_row, a_row, a_col, B, ldb, K, alpha, 3, cols); break;
    case 2: gemm_tile<T, 2, NV>(C + m * ldc, ldc, A + m * a_row, a_row, a_col, B, ldb, K, alpha, 2, cols); break;
    case 1: gemm_tile<T, 1, NV>(C + m * ldc, ldc, A + m * a_row, a_row, a_col, B, ldb, K, alpha, 1, cols); break;
    default: break;
  }
}

template <typename T>
TR_INLINE void small_gemm(T* C, i64 ldc, const T* A, i64 a_row, i64 a_col, const T* B, i64 ldb,
                          i64 M, i64 N, i64 K, T alpha) {
  constexpr int L = Vec<T>::lanes;
  i64 n = 0;
  for (; n + L < N; n += 2 * L)  // two vectors while more than one vector is left
    gemm_rows<T, 2>(C + n, ldc, A, a_row, a_col, B + n, ldb, M, K, alpha, N - n);
  if (n < N) gemm_rows<T, 1>(C + n, ldc, A, a_row, a_col, B + n, ldb, M, K, alpha, N - n);
}

// Rounds n up to the vector width of T.
template <typename T>
constexpr i64 round_up_lanes(i64 n) {
  constexpr i64 L = Vec<T>::lanes;
  return (n + L - 1) / L * L;
}

}  // namespace simd
}  // namespace tr::cpu
