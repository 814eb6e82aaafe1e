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

// Defines name_avx2 and name_base, two compilations of the TR_INLINE function `name`, e.g.
//   TR_ISA_VARIANTS(gelu_rows, (float* y, const float* x, i64 n), (y, x, n))
// and TR_ISA_PICK(gelu_rows) is the pointer to the variant this CPU runs.
#define TR_ISA_VARIANTS(name, params, args) \
  TR_TARGET_AVX2 void name##_avx2 params {  \
    name args;                              \
  }                                         \
  void name##_base params {                 \
    name args;                              \
  }
#define TR_ISA_PICK(name) (::tr::cpu::cpu_has_avx2_fma() ? &name##_avx2 : &name##_base)

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

template <typename T>
TR_INLINE typename Vec<T>::type load(const T* p) {
  return *reinterpret_cast<const typename Vec<T>::utype*>(p);
}
template <typename T>
TR_INLINE void store(T* p, typename Vec<T>::type v) {
  *reinterpret_cast<typename Vec<T>::utype*>(p) = v;
}
template <typename T>
TR_INLINE typename Vec<T>::type splat(T x) {
  return typename Vec<T>::type{} + x;
}
// The first n (< lanes) elements of p, the other lanes `fill`.
template <typename T>
TR_INLINE typename Vec<T>::type load_partial(const T* p, i64 n, T fill) {
  T tmp[Vec<T>::lanes];
  for (int l = 0; l < Vec<T>::lanes; ++l) tmp[l] = l < n ? p[l] : fill;
  typename Vec<T>::type v;
  std::memcpy(&v, tmp, sizeof v);
  return v;
}
// Horizontal sum and max in a fixed pairwise order.
TR_INLINE float hsum(Vec<float>::type v) {
  return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
}
TR_INLINE double hsum(Vec<double>::type v) {
  return (v[0] + v[1]) + (v[2] + v[3]);
}
template <typename T>
TR_INLINE T hmax(typename Vec<T>::type v) {
  T m = v[0];
  for (int l = 1; l < Vec<T>::lanes; ++l) m = v[l] > m ? v[l] : m;
  return m;
}
template <typename V>
TR_INLINE V vmax(V a, V b) {
  return a > b ? a : b;
}

// sum of x[0, n): one partial per lane, summed in lane order, then hsum. Fixed order for a
// given n, whatever the ISA variant (only FMA contraction may differ between variants).
template <typename T>
TR_INLINE T sum(const T* x, i64 n) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::lanes;
  V acc{};
  i64 j = 0;
  for (; j + L <= n; j += L) acc += load(x + j);
  if (j < n) acc += load_partial(x + j, n - j, T(0));
  return hsum(acc);
}
// sum_j x[j] y[j], same order.
template <typename T>
TR_INLINE T dot(const T* x, const T* y, i64 n) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::lanes;
  V acc{};
  i64 j = 0;
  for (; j + L <= n; j += L) acc += load(x + j) * load(y + j);
  if (j < n) acc += load_partial(x + j, n - j, T(0)) * load_partial(y + j, n - j, T(0));
  return hsum(acc);
}
// max of x[0, n), n >= 1. NaNs are skipped (a > b ? a : b), as std::max(m, x) did.
template <typename T>
TR_INLINE T max(const T* x, i64 n) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::lanes;
  V acc = splat(x[0]);
  i64 j = 0;
  for (; j + L <= n; j += L) acc = vmax(load(x + j), acc);
  if (j < n) acc = vmax(load_partial(x + j, n - j, x[0]), acc);
  return hmax<T>(acc);
}

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

// Exact-height tiles for the last rem < R rows (a full-height tile would read A past M).
template <typename T, int NV, int R>
TR_INLINE void gemm_tail(T* C, i64 ldc, const T* A, i64 a_row, i64 a_col, const T* B, i64 ldb,
                         i64 rem, i64 K, T alpha, i64 cols) {
  if constexpr (R > 0) {
    if (rem == R)
      gemm_tile<T, R, NV>(C, ldc, A, a_row, a_col, B, ldb, K, alpha, R, cols);
    else
      gemm_tail<T, NV, R - 1>(C, ldc, A, a_row, a_col, B, ldb, rem, K, alpha, cols);
  }
}

// All M rows of one column block of NV vectors, R rows per tile: R * NV accumulators plus NV
// B vectors stay in the 16 AVX registers (R = 12 / NV).
template <typename T, int NV>
TR_INLINE void gemm_rows(T* C, i64 ldc, const T* A, i64 a_row, i64 a_col, const T* B, i64 ldb,
                         i64 M, i64 K, T alpha, i64 cols) {
  constexpr int R = NV == 1 ? 8 : 12 / NV;
  i64 m = 0;
  for (; m + R <= M; m += R)
    gemm_tile<T, R, NV>(C + m * ldc, ldc, A + m * a_row, a_row, a_col, B, ldb, K, alpha, R, cols);
  if (m < M)
    gemm_tail<T, NV, R - 1>(C + m * ldc, ldc, A + m * a_row, a_row, a_col, B, ldb, M - m, K, alpha,
                            cols);
}

template <typename T>
TR_INLINE void small_gemm(T* C, i64 ldc, const T* A, i64 a_row, i64 a_col, const T* B, i64 ldb,
                          i64 M, i64 N, i64 K, T alpha) {
  constexpr int L = Vec<T>::lanes;
  // Column blocks of up to 4 vectors; 5-7 vectors split as 4 + rest, 8 as 4 + 4.
  i64 n = 0;
  while (n < N) {
    const i64 vecs = (N - n + L - 1) / L;
    const i64 cols = N - n;
    if (vecs >= 4) {
      gemm_rows<T, 4>(C + n, ldc, A, a_row, a_col, B + n, ldb, M, K, alpha, cols);
      n += 4 * L;
    } else if (vecs == 3) {
      gemm_rows<T, 3>(C + n, ldc, A, a_row, a_col, B + n, ldb, M, K, alpha, cols);
      n += 3 * L;
    } else if (vecs == 2) {
      gemm_rows<T, 2>(C + n, ldc, A, a_row, a_col, B + n, ldb, M, K, alpha, cols);
      n += 2 * L;
    } else {
      gemm_rows<T, 1>(C + n, ldc, A, a_row, a_col, B + n, ldb, M, K, alpha, cols);
      n += L;
    }
  }
}

// dst[r * ldd + c] = src[c * lds + r] for r < rows, c < cols (a transpose), in blocks of
// lanes x lanes through registers.
template <typename T>
TR_INLINE void transpose(T* dst, i64 ldd, const T* src, i64 lds, i64 rows, i64 cols) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::lanes;
  i64 c0 = 0;
  for (; c0 + L <= cols; c0 += L) {
    i64 r0 = 0;
    for (; r0 + L <= rows; r0 += L) {
      V in[L];
      for (int i = 0; i < L; ++i) in[i] = load(src + (c0 + i) * lds + r0);
      if constexpr (L == 8) {
        V t[8], u[8];
        for (int i = 0; i < 8; i += 2) {
          t[i] = __builtin_shufflevector(in[i], in[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
          t[i + 1] = __builtin_shufflevector(in[i], in[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
        }
        for (int i = 0; i < 8; i += 4) {
          u[i] = __builtin_shufflevector(t[i], t[i + 2], 0, 1, 8, 9, 4, 5, 12, 13);
          u[i + 1] = __builtin_shufflevector(t[i], t[i + 2], 2, 3, 10, 11, 6, 7, 14, 15);
          u[i + 2] = __builtin_shufflevector(t[i + 1], t[i + 3], 0, 1, 8, 9, 4, 5, 12, 13);
          u[i + 3] = __builtin_shufflevector(t[i + 1], t[i + 3], 2, 3, 10, 11, 6, 7, 14, 15);
        }
        for (int i = 0; i < 4; ++i) {
          store(dst + (r0 + i) * ldd + c0,
                __builtin_shufflevector(u[i], u[i + 4], 0, 1, 2, 3, 8, 9, 10, 11));
          store(dst + (r0 + i + 4) * ldd + c0,
                __builtin_shufflevector(u[i], u[i + 4], 4, 5, 6, 7, 12, 13, 14, 15));
        }
      } else {
        V t[4];
        t[0] = __builtin_shufflevector(in[0], in[1], 0, 4, 2, 6);
        t[1] = __builtin_shufflevector(in[0], in[1], 1, 5, 3, 7);
        t[2] = __builtin_shufflevector(in[2], in[3], 0, 4, 2, 6);
        t[3] = __builtin_shufflevector(in[2], in[3], 1, 5, 3, 7);
        store(dst + (r0 + 0) * ldd + c0, __builtin_shufflevector(t[0], t[2], 0, 1, 4, 5));
        store(dst + (r0 + 1) * ldd + c0, __builtin_shufflevector(t[1], t[3], 0, 1, 4, 5));
        store(dst + (r0 + 2) * ldd + c0, __builtin_shufflevector(t[0], t[2], 2, 3, 6, 7));
        store(dst + (r0 + 3) * ldd + c0, __builtin_shufflevector(t[1], t[3], 2, 3, 6, 7));
      }
    }
    for (; r0 < rows; ++r0)
      for (i64 i = 0; i < L; ++i) dst[r0 * ldd + c0 + i] = src[(c0 + i) * lds + r0];
  }
  for (; c0 < cols; ++c0)
    for (i64 r = 0; r < rows; ++r) dst[r * ldd + c0] = src[c0 * lds + r];
}

// Rounds n up to the vector width of T.
template <typename T>
constexpr i64 round_up_lanes(i64 n) {
  constexpr i64 L = Vec<T>::lanes;
  return (n + L - 1) / L * L;
}

}  // namespace simd
}  // namespace tr::cpu
