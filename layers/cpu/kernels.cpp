// CPU kernels except attention (attention.cpp), dropout masks (philox.cpp) and the optimizer
// updates and reductions kept with them.
//
// Reductions accumulate in double whatever T is: the fp32 kernels then agree with the fp64
// references to rounding of the final store, and the summation order is a fixed loop.
#include "layers/cpu/kernels.h"

#include <cblas.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "layers/cpu/bf16.h"
#include "layers/cpu/gelu_avx2.h"
#include "layers/cpu/simd.h"
#include "layers/cpu/vec_math.h"
#include "layers/error.h"

namespace tr::cpu {

bool cpu_has_avx2_fma() {
#if TR_HAVE_ISA_DISPATCH
  static const bool has = [] {
    const char* isa = std::getenv("TR_CPU_ISA");
    if (isa != nullptr && std::strcmp(isa, "baseline") == 0) return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return has;
#else
  return false;
#endif
}

namespace {

// Columns a thread owns in the column-parallel reductions: the per-column sums stay in a
// small stack array and each column is summed over rows in row order whatever the threads.
constexpr i64 kColBlock = 64;

// Rows below which spinning up a parallel region costs more than the work.
constexpr i64 kParallelMin = 1 << 14;

inline int blas_int(i64 v, const char* what) {
  TR_CHECK(v >= 0 && v <= INT_MAX, std::string("gemm: ") + what + " out of int range");
  return static_cast<int>(v);
}

inline void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha,
                      const float* A, int lda, const float* B, int ldb, float beta, float* C,
                      int ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

inline void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, double alpha,
                      const double* A, int lda, const double* B, int ldb, double beta, double* C,
                      int ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// Elements per task of the chunked elementwise loops: whole chunks, so an element's result
// never depends on how the range is split.
constexpr i64 kChunk = 1 << 12;

// Runs fn(begin, end) over [0, n) in chunks of kChunk, in parallel above kParallelMin.
template <typename Fn>
void for_chunks(i64 n, Fn&& fn) {
  if (n <= kParallelMin) {
    if (n > 0) fn(i64{0}, n);
    return;
  }
  const i64 chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static)
  for (i64 c = 0; c < chunks; ++c) fn(c * kChunk, std::min(n, (c + 1) * kChunk));
}

// ---- fp32 elementwise bodies, compiled for AVX2+FMA and for the baseline ----------------------

TR_INLINE void gelu_forward_f32(float* out, const float* in, i64 n) {
  for (i64 i = 0; i < n; ++i) {
    const float x = in[i];
    out[i] = x * vm::normal_cdf_f(x);
  }
}
// The AVX2 variants are the intrinsics of gelu_avx2.h (no vdivps); the baseline compiles the
// generic loops.
TR_TARGET_AVX2 void gelu_forward_f32_avx2(float* out, const float* in, i64 n) {
  avx2::gelu_forward(out, in, n);
}
void gelu_forward_f32_base(float* out, const float* in, i64 n) {
  gelu_forward_f32(out, in, n);
}

TR_INLINE void gelu_backward_f32(float* din, const float* dout, const float* in, i64 n) {
  constexpr float kInvSqrt2Pi = 0.398942280401432677939946f;
  for (i64 i = 0; i < n; ++i) {
    const float x = in[i];
    const float pdf = kInvSqrt2Pi * vm::exp_f(-0.5f * x * x);
    din[i] = dout[i] * (vm::normal_cdf_f(x) + x * pdf);
  }
}
TR_TARGET_AVX2 void gelu_backward_f32_avx2(float* din, const float* dout, const float* in, i64 n) {
  avx2::gelu_backward(din, dout, in, n);
}
void gelu_backward_f32_base(float* din, const float* dout, const float* in, i64 n) {
  gelu_backward_f32(din, dout, in, n);
}

// Backward from the forward output y = x Phi(x): Phi(x) = y / x, exact to rounding (y is x Phi
// rounded once). Near 0, where y / x would lose y to underflow, Phi is 1/2 to float precision.
TR_INLINE void gelu_backward_from_out_f32(float* din, const float* dout, const float* in,
                                          const float* out, i64 n) {
  constexpr float kInvSqrt2Pi = 0.398942280401432677939946f;
  for (i64 i = 0; i < n; ++i) {
    const float x = in[i];
    const float ax = x < 0.0f ? -x : x;
    const float cdf = ax < 1e-30f ? 0.5f : out[i] / (ax < 1e-30f ? 1.0f : x);
    const float pdf = kInvSqrt2Pi * vm::exp_f(-0.5f * x * x);
    din[i] = dout[i] * (cdf + x * pdf);
  }
}
TR_TARGET_AVX2 void gelu_backward_from_out_f32_avx2(float* din, const float* dout, const float* in,
                                                    const float* out, i64 n) {
  avx2::gelu_backward_from_out(din, dout, in, out, n);
}
void gelu_backward_from_out_f32_base(float* din, const float* dout, const float* in,
                                     const float* out, i64 n) {
  gelu_backward_from_out_f32(din, dout, in, out, n);
}

// Softmax of rows [r0, r1) in float: exp through vm::exp_f, fixed-order float sums.
TR_INLINE void softmax_rows_f32(float* out, const float* in, i64 r0, i64 r1, i64 cols) {
  for (i64 r = r0; r < r1; ++r) {
    const float* x = in + r * cols;
    float* y = out + r * cols;
    const float mx = simd::max(x, cols);
    for (i64 c = 0; c < cols; ++c) y[c] = vm::exp_f(x[c] - mx);
    const float inv = 1.0f / simd::sum(y, cols);
    for (i64 c = 0; c < cols; ++c) y[c] *= inv;
  }
}
TR_ISA_VARIANTS(softmax_rows_f32, (float* out, const float* in, i64 r0, i64 r1, i64 cols),
                (out, in, r0, r1, cols))

// LayerNorm rows [r0, r1) in float: statistics from fixed-order float sums (simd::sum: the
// order depends on cols only), two passes as in the fp64 kernel.
TR_INLINE void layernorm_rows_f32(float* out, float* mean, float* rstd, const float* in,
                                  const float* weight, const float* bias, i64 r0, i64 r1, i64 cols,
                                  float eps) {
  using V = simd::Vec<float>::type;
  constexpr int L = simd::Vec<float>::lanes;
  const float inv_cols = 1.0f / static_cast<float>(cols);
  for (i64 r = r0; r < r1; ++r) {
    const float* x = in + r * cols;
    float* y = out + r * cols;
    const float mu = simd::sum(x, cols) * inv_cols;
    const V vmu = simd::splat(mu);
    V acc{};
    i64 c = 0;
    for (; c + L <= cols; c += L) {
      const V d = simd::load(x + c) - vmu;
      acc += d * d;
    }
    if (c < cols) {
      const V d = simd::load_partial(x + c, cols - c, mu) - vmu;  // padding lanes give 0
      acc += d * d;
    }
    const float s = 1.0f / std::sqrt(simd::hsum(acc) * inv_cols + eps);
    mean[r] = mu;
    rstd[r] = s;
    for (i64 j = 0; j < cols; ++j) y[j] = (x[j] - mu) * s * weight[j] + bias[j];
  }
}
TR_ISA_VARIANTS(layernorm_rows_f32,
                (float* out, float* mean, float* rstd, const float* in, const float* weight,
                 const float* bias, i64 r0, i64 r1, i64 cols, float eps),
                (out, mean, rstd, in, weight, bias, r0, r1, cols, eps))

// LayerNorm input gradient of rows [r0, r1) in float (fixed-order row sums).
TR_INLINE void layernorm_din_rows_f32(float* din, const float* dout, const float* in,
                                      const float* weight, const float* mean, const float* rstd,
                                      const float* residual, i64 r0, i64 r1, i64 cols) {
  using V = simd::Vec<float>::type;
  constexpr int L = simd::Vec<float>::lanes;
  const float inv_cols = 1.0f / static_cast<float>(cols);
  for (i64 r = r0; r < r1; ++r) {
    const float* x = in + r * cols;
    const float* g = dout + r * cols;
    float* dx = din + r * cols;
    const float m = mean[r], s = rstd[r];
    const V vm_ = simd::splat(m), vs = simd::splat(s);
    V pa{}, pb{};
    i64 c = 0;
    for (; c + L <= cols; c += L) {
      const V xhat = (simd::load(x + c) - vm_) * vs;
      const V dxhat = simd::load(g + c) * simd::load(weight + c);
      pa += dxhat;
      pb += dxhat * xhat;
    }
    if (c < cols) {
      const i64 n = cols - c;
      const V xhat = (simd::load_partial(x + c, n, m) - vm_) * vs;
      const V dxhat = simd::load_partial(g + c, n, 0.0f) * simd::load_partial(weight + c, n, 0.0f);
      pa += dxhat;
      pb += dxhat * xhat;
    }
    const float a = simd::hsum(pa) * inv_cols;
    const float b = simd::hsum(pb) * inv_cols;
    if (residual != nullptr) {
      const float* res = residual + r * cols;
      for (i64 j = 0; j < cols; ++j) {
        const float xhat = (x[j] - m) * s;
        dx[j] = res[j] + s * (g[j] * weight[j] - a - xhat * b);
      }
    } else {
      for (i64 j = 0; j < cols; ++j) {
        const float xhat = (x[j] - m) * s;
        dx[j] = s * (g[j] * weight[j] - a - xhat * b);
      }
    }
  }
}
TR_ISA_VARIANTS(layernorm_din_rows_f32,
                (float* din, const float* dout, const float* in, const float* weight,
                 const float* mean, const float* rstd, const float* residual, i64 r0, i64 r1,
                 i64 cols),
                (din, dout, in, weight, mean, rstd, residual, r0, r1, cols))

// Columns per task of the column reductions below (two vectors: the double accumulators of
// dweight and dbias then stay in registers).
constexpr i64 kRedCols = 16;

// dweight[c] += sum_r dout[r, c] * xhat[r, c] and dbias[c] += sum_r dout[r, c] for columns
// [c0, c0 + kRedCols) clipped to cols: each column summed over rows in row order, in double.
TR_INLINE void layernorm_dparams_cols_f32(float* dweight, float* dbias, const float* dout,
                                          const float* in, const float* mean, const float* rstd,
                                          i64 rows, i64 cols, i64 c0) {
  using V = simd::Vec<float>::type;
  typedef double V4 __attribute__((vector_size(32)));
  const i64 w = std::min<i64>(kRedCols, cols - c0);
  V4 dw[4] = {}, db[4] = {};
  for (i64 r = 0; r < rows; ++r) {
    const float* x = in + r * cols + c0;
    const float* g = dout + r * cols + c0;
    const V m = simd::splat(mean[r]), s = simd::splat(rstd[r]);
    for (int h = 0; h < 2; ++h) {
      const i64 n = w - 8 * h;
      if (n <= 0) break;
      const V gv = n >= 8 ? simd::load(g + 8 * h) : simd::load_partial(g + 8 * h, n, 0.0f);
      const V xv = n >= 8 ? simd::load(x + 8 * h) : simd::load_partial(x + 8 * h, n, 0.0f);
      const V p = gv * ((xv - m) * s);
      dw[2 * h] += __builtin_convertvector(__builtin_shufflevector(p, p, 0, 1, 2, 3), V4);
      dw[2 * h + 1] += __builtin_convertvector(__builtin_shufflevector(p, p, 4, 5, 6, 7), V4);
      db[2 * h] += __builtin_convertvector(__builtin_shufflevector(gv, gv, 0, 1, 2, 3), V4);
      db[2 * h + 1] += __builtin_convertvector(__builtin_shufflevector(gv, gv, 4, 5, 6, 7), V4);
    }
  }
  for (i64 c = 0; c < w; ++c) {
    dweight[c0 + c] += static_cast<float>(dw[c / 4][c % 4]);
    dbias[c0 + c] += static_cast<float>(db[c / 4][c % 4]);
  }
}
TR_ISA_VARIANTS(layernorm_dparams_cols_f32,
                (float* dweight, float* dbias, const float* dout, const float* in,
                 const float* mean, const float* rstd, i64 rows, i64 cols, i64 c0),
                (dweight, dbias, dout, in, mean, rstd, rows, cols, c0))

// Rows of one partial sum of the bias gradient: blocks are fixed (not per thread), so the
// result does not depend on the thread count.
constexpr i64 kBiasRows = 32;

// part[c] = sum over rows [r0, r1) of dout[r, c], in double, in row order. Walking whole rows
// reads dout once, contiguously: column strips over all rows (a 16-float slice of every row)
// measured 3.4x slower on fc1's [6400, 768] gradient, their accesses defeating the prefetcher.
TR_INLINE void bias_grad_rows_f32(double* part, const float* dout, i64 r0, i64 r1, i64 cols) {
  using V = simd::Vec<float>::type;
  typedef double V4 __attribute__((vector_size(32)));
  for (i64 c = 0; c < cols; ++c) part[c] = 0.0;
  const i64 cv = cols - cols % 8;
  for (i64 r = r0; r < r1; ++r) {
    const float* g = dout + r * cols;
    for (i64 c = 0; c < cv; c += 8) {
      const V gv = simd::load(g + c);
      V4 lo, hi;
      std::memcpy(&lo, part + c, sizeof lo);
      std::memcpy(&hi, part + c + 4, sizeof hi);
      lo += __builtin_convertvector(__builtin_shufflevector(gv, gv, 0, 1, 2, 3), V4);
      hi += __builtin_convertvector(__builtin_shufflevector(gv, gv, 4, 5, 6, 7), V4);
      std::memcpy(part + c, &lo, sizeof lo);
      std::memcpy(part + c + 4, &hi, sizeof hi);
    }
    for (i64 c = cv; c < cols; ++c) part[c] += g[c];
  }
}
TR_ISA_VARIANTS(bias_grad_rows_f32, (double* part, const float* dout, i64 r0, i64 r1, i64 cols),
                (part, dout, r0, r1, cols))

// Rows per task of the row-parallel kernels: a few rows, so a task is worth scheduling.
inline i64 row_block(i64 cols) {
  return std::max<i64>(1, 2048 / std::max<i64>(cols, 1));
}

// One cross-entropy row: its max, sum_v exp(x[v] - max) and sum_v x[v], the sums in double in
// a fixed order (8 lanes, each summed in double, then a fixed tree).
TR_INLINE void ce_row_stats_f32(const float* x, i64 V, float* mx_out, double* sum_out,
                                double* sum_x_out) {
  const float mx = simd::max(x, V);
  double part[8] = {}, part_x[8] = {};
  float e[8];
  i64 v = 0;
  for (; v + 8 <= V; v += 8) {
    for (int l = 0; l < 8; ++l) e[l] = vm::exp_f(x[v + l] - mx);
    for (int l = 0; l < 8; ++l) {
      part[l] += e[l];
      part_x[l] += x[v + l];
    }
  }
  for (int l = 0; v < V; ++v, ++l) {
    part[l] += vm::exp_f(x[v] - mx);
    part_x[l] += x[v];
  }
  *mx_out = mx;
  *sum_x_out = ((part_x[0] + part_x[1]) + (part_x[2] + part_x[3])) +
               ((part_x[4] + part_x[5]) + (part_x[6] + part_x[7]));
  *sum_out =
      ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}
TR_ISA_VARIANTS(ce_row_stats_f32, (const float* x, i64 V, float* mx, double* sum, double* sum_x),
                (x, V, mx, sum, sum_x))

// g[v] = scale * (exp(x[v] - lse) - smooth) over one row.
TR_INLINE void ce_grad_row_f32(float* g, const float* x, float lse, float scale, float smooth,
                               i64 V) {
  for (i64 v = 0; v < V; ++v) g[v] = scale * (vm::exp_f(x[v] - lse) - smooth);
}
TR_ISA_VARIANTS(ce_grad_row_f32,
                (float* g, const float* x, float lse, float scale, float smooth, i64 V),
                (g, x, lse, scale, smooth, V))

}  // namespace

// ---- GEMM ----------------------------------------------------------------------------------

namespace {
// rows x cols of `src` (leading dimension ld), each value rounded to bf16, packed into `buf`.
const float* rounded_to_bf16(std::vector<float>& buf, const float* src, i64 rows, i64 cols,
                             i64 ld) {
  buf.resize(static_cast<std::size_t>(rows * cols));
  float* out = buf.data();
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (i64 r = 0; r < rows; ++r)
    for (i64 c = 0; c < cols; ++c) out[r * cols + c] = round_to_bf16(src[r * ld + c]);
  return out;
}
}  // namespace

template <typename T>
void gemm(bool trans_a, bool trans_b, i64 M, i64 N, i64 K, T alpha, const T* A, i64 lda, const T* B,
          i64 ldb, T beta, T* C, i64 ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0 || alpha == T(0)) {
    // BLAS rejects lda < 1 when K == 0; and beta == 0 must overwrite NaNs, not multiply them.
    for (i64 m = 0; m < M; ++m) {
      T* c = C + m * ldc;
      if (beta == T(0)) {
        std::fill(c, c + N, T(0));
      } else {
        for (i64 n = 0; n < N; ++n) c[n] *= beta;
      }
    }
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    if (bf16_products()) {
      // The operands as the GPU's bf16 products see them; packed (ld = used columns).
      thread_local std::vector<float> a_rounded, b_rounded;
      const i64 a_rows = trans_a ? K : M, a_cols = trans_a ? M : K;
      const i64 b_rows = trans_b ? N : K, b_cols = trans_b ? K : N;
      A = rounded_to_bf16(a_rounded, A, a_rows, a_cols, lda);
      B = rounded_to_bf16(b_rounded, B, b_rows, b_cols, ldb);
      lda = a_cols;
      ldb = b_cols;
    }
  }
  blas_gemm(trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
            blas_int(M, "M"), blas_int(N, "N"), blas_int(K, "K"), alpha, A, blas_int(lda, "lda"), B,
            blas_int(ldb, "ldb"), beta, C, blas_int(ldc, "ldc"));
}

// ---- elementwise ---------------------------------------------------------------------------

template <typename T>
void bias_add(T* out, const T* in, const T* bias, i64 rows, i64 cols) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (i64 r = 0; r < rows; ++r) {
    const T* x = in + r * cols;
    T* y = out + r * cols;
    for (i64 c = 0; c < cols; ++c) y[c] = x[c] + bias[c];
  }
}

template <typename T>
void bias_fill(T* out, const T* bias, i64 rows, i64 cols) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (i64 r = 0; r < rows; ++r) std::memcpy(out + r * cols, bias, sizeof(T) * cols);
}

template <typename T>
void bias_backward_accumulate(T* dbias, const T* dout, i64 rows, i64 cols) {
  if constexpr (std::is_same_v<T, float>) {
    // Partial sums of fixed row blocks, then the blocks added in order: the same sums whatever
    // the thread count. The scratch belongs to the calling thread and only grows (no
    // allocation once warm).
    const auto fn = TR_ISA_PICK(bias_grad_rows_f32);
    const i64 blocks = (rows + kBiasRows - 1) / kBiasRows;
    thread_local std::vector<double> scratch;
    if (static_cast<i64>(scratch.size()) < blocks * cols) scratch.resize(blocks * cols);
    double* part = scratch.data();
#pragma omp parallel if (rows * cols > kParallelMin)
    {
#pragma omp for schedule(static)
      for (i64 b = 0; b < blocks; ++b)
        fn(part + b * cols, dout, b * kBiasRows, std::min(rows, (b + 1) * kBiasRows), cols);
#pragma omp for schedule(static)
      for (i64 c0 = 0; c0 < cols; c0 += kColBlock) {
        const i64 c1 = std::min(cols, c0 + kColBlock);
        double acc[kColBlock] = {};
        for (i64 b = 0; b < blocks; ++b)
          for (i64 c = c0; c < c1; ++c) acc[c - c0] += part[b * cols + c];
        for (i64 c = c0; c < c1; ++c) dbias[c] += static_cast<float>(acc[c - c0]);
      }
    }
    return;
  }
  const i64 blocks = (cols + kColBlock - 1) / kColBlock;
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (i64 blk = 0; blk < blocks; ++blk) {
    const i64 c0 = blk * kColBlock, c1 = std::min(cols, c0 + kColBlock);
    double acc[kColBlock] = {};
    for (i64 r = 0; r < rows; ++r) {
      const T* g = dout + r * cols;
      for (i64 c = c0; c < c1; ++c) acc[c - c0] += g[c];
    }
    for (i64 c = c0; c < c1; ++c) dbias[c] += static_cast<T>(acc[c - c0]);
  }
}

template <typename T>
void add(T* out, const T* a, const T* b, i64 n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (i64 i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

template <typename T>
void add_accumulate(T* out, const T* a, i64 n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (i64 i = 0; i < n; ++i) out[i] += a[i];
}

template <typename T>
void scale(T* out, const T* in, T alpha, i64 n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (i64 i = 0; i < n; ++i) out[i] = alpha * in[i];
}

template <typename T>
void gelu_forward(T* out, const T* in, i64 n) {
  if constexpr (std::is_same_v<T, float>) {
    const auto fn = TR_ISA_PICK(gelu_forward_f32);
    for_chunks(n, [&](i64 b, i64 e) { fn(out + b, in + b, e - b); });
    return;
  }
  const T inv_sqrt2 = static_cast<T>(0.70710678118654752440084436210485);
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (i64 i = 0; i < n; ++i) {
    const T x = in[i];
    out[i] = T(0.5) * x * (T(1) + std::erf(x * inv_sqrt2));
  }
}

template <typename T>
void gelu_backward(T* din, const T* dout, const T* in, i64 n, const T* out) {
  if constexpr (std::is_same_v<T, float>) {
    if (out != nullptr) {
      const auto fn = TR_ISA_PICK(gelu_backward_from_out_f32);
      for_chunks(n, [&](i64 b, i64 e) { fn(din + b, dout + b, in + b, out + b, e - b); });
    } else {
      const auto fn = TR_ISA_PICK(gelu_backward_f32);
      for_chunks(n, [&](i64 b, i64 e) { fn(din + b, dout + b, in + b, e - b); });
    }
    return;
  }
  const T inv_sqrt2 = static_cast<T>(0.70710678118654752440084436210485);
  const T inv_sqrt_2pi = static_cast<T>(0.39894228040143267793994605993438);
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (i64 i = 0; i < n; ++i) {
    const T x = in[i];
    const T cdf = T(0.5) * (T(1) + std::erf(x * inv_sqrt2));
    const T pdf = inv_sqrt_2pi * std::exp(T(-0.5) * x * x);
    din[i] = dout[i] * (cdf + x * pdf);
  }
}

// The tanh GELU's gate 0.5 (1 + tanh(u)) is the logistic sigmoid of 2u; the fp32 kernels take it
// as 1 / (1 + e^-2u) through vm::exp_f (one exp, no libm call; e^-2u overflows to inf far in the
// negative tail, where the gate is 0), the fp64 ones through std::tanh.
namespace gelu_tanh_detail {
constexpr double kSqrt2OverPi = 0.79788456080286535587989211986876;
constexpr double kCubic = 0.044715;
template <typename T>
T gate_argument(T x) {  // u
  return static_cast<T>(kSqrt2OverPi) * (x + static_cast<T>(kCubic) * x * x * x);
}
template <typename T>
T gate_argument_slope(T x) {  // du/dx
  return static_cast<T>(kSqrt2OverPi) * (T(1) + static_cast<T>(3 * kCubic) * x * x);
}
}  // namespace gelu_tanh_detail

template <typename T>
void gelu_tanh_forward(T* out, const T* in, i64 n) {
  using namespace gelu_tanh_detail;
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (i64 i = 0; i < n; ++i) {
    const T x = in[i];
    if constexpr (std::is_same_v<T, float>)
      out[i] = x / (1.0f + vm::exp_f(-2.0f * gate_argument(x)));
    else
      out[i] = T(0.5) * x * (T(1) + std::tanh(gate_argument(x)));
  }
}

template <typename T>
void gelu_tanh_backward(T* din, const T* dout, const T* in, i64 n) {
  using namespace gelu_tanh_detail;
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (i64 i = 0; i < n; ++i) {
    const T x = in[i];
    // d/dx [x s(2u)] = s + 2 x s (1 - s) u', s = 0.5 (1 + tanh u); with t = tanh u, 4 s (1 - s)
    // = 1 - t^2.
    if constexpr (std::is_same_v<T, float>) {
      const float s = 1.0f / (1.0f + vm::exp_f(-2.0f * gate_argument(x)));
      din[i] = dout[i] * (s + 2.0f * x * s * (1.0f - s) * gate_argument_slope(x));
    } else {
      const T t = std::tanh(gate_argument(x));
      din[i] =
          dout[i] * (T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * gate_argument_slope(x));
    }
  }
}

template <typename T>
void relu_forward(T* out, const T* in, i64 n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (i64 i = 0; i < n; ++i) {
    const T x = in[i];
    out[i] = x > T(0) ? x : T(0);
  }
}

template <typename T>
void relu_backward(T* din, const T* dout, const T* in, i64 n) {
  // dout is read unconditionally: a load under the condition keeps GCC from vectorising (it
  // may not invent loads), and the scalar branch mispredicts on half the elements.
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (i64 i = 0; i < n; ++i) {
    const T g = dout[i];
    din[i] = in[i] > T(0) ? g : T(0);
  }
}

// ---- LayerNorm -----------------------------------------------------------------------------

template <typename T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* in, const T* weight, const T* bias,
                       i64 rows, i64 cols, T eps) {
  if constexpr (std::is_same_v<T, float>) {
    const auto fn = TR_ISA_PICK(layernorm_rows_f32);
    const i64 rb = row_block(cols), blocks = (rows + rb - 1) / rb;
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
    for (i64 k = 0; k < blocks; ++k)
      fn(out, mean, rstd, in, weight, bias, k * rb, std::min(rows, (k + 1) * rb), cols, eps);
    return;
  }
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (i64 r = 0; r < rows; ++r) {
    const T* x = in + r * cols;
    T* y = out + r * cols;
    double sum = 0;
    for (i64 c = 0; c < cols; ++c) sum += x[c];
    const double mu = sum / static_cast<double>(cols);
    // Two passes: the one-pass E[x^2] - mu^2 cancels badly when |mu| >> sigma.
    double sq = 0;
    for (i64 c = 0; c < cols; ++c) {
      const double d = x[c] - mu;
      sq += d * d;
    }
    const double rs = 1.0 / std::sqrt(sq / static_cast<double>(cols) + static_cast<double>(eps));
    mean[r] = static_cast<T>(mu);
    rstd[r] = static_cast<T>(rs);
    const T m = static_cast<T>(mu), s = static_cast<T>(rs);
    for (i64 c = 0; c < cols; ++c) y[c] = (x[c] - m) * s * weight[c] + bias[c];
  }
}

template <typename T>
void layernorm_backward(T* din, T* dweight, T* dbias, const T* dout, const T* in, const T* weight,
                        const T* mean, const T* rstd, i64 rows, i64 cols, const T* residual) {
  const bool par = rows * cols > kParallelMin;
  if constexpr (std::is_same_v<T, float>) {
    const auto rows_fn = TR_ISA_PICK(layernorm_din_rows_f32);
    const auto cols_fn = TR_ISA_PICK(layernorm_dparams_cols_f32);
    const i64 rb = row_block(cols), rblocks = (rows + rb - 1) / rb;
    const i64 cblocks = (cols + kRedCols - 1) / kRedCols;
    // One parallel region for both passes; `nowait` is not used, the barrier keeps din complete
    // before the caller sees it (the two passes are independent of each other).
#pragma omp parallel if (par)
    {
#pragma omp for schedule(static)
      for (i64 k = 0; k < rblocks; ++k)
        rows_fn(din, dout, in, weight, mean, rstd, residual, k * rb, std::min(rows, (k + 1) * rb),
                cols);
#pragma omp for schedule(static)
      for (i64 blk = 0; blk < cblocks; ++blk)
        cols_fn(dweight, dbias, dout, in, mean, rstd, rows, cols, blk * kRedCols);
    }
    return;
  }
#pragma omp parallel for schedule(static) if (par)
  for (i64 r = 0; r < rows; ++r) {
    const T* x = in + r * cols;
    const T* g = dout + r * cols;
    T* dx = din + r * cols;
    const T m = mean[r], s = rstd[r];
    // din = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dout * weight.
    double sum_dxhat = 0, sum_dxhat_xhat = 0;
    for (i64 c = 0; c < cols; ++c) {
      const T xhat = (x[c] - m) * s;
      const T dxhat = g[c] * weight[c];
      sum_dxhat += dxhat;
      sum_dxhat_xhat += static_cast<double>(dxhat) * xhat;
    }
    const T a = static_cast<T>(sum_dxhat / static_cast<double>(cols));
    const T b = static_cast<T>(sum_dxhat_xhat / static_cast<double>(cols));
    const T* res = residual ? residual + r * cols : nullptr;
    for (i64 c = 0; c < cols; ++c) {
      const T xhat = (x[c] - m) * s;
      const T d = s * (g[c] * weight[c] - a - xhat * b);
      dx[c] = res ? res[c] + d : d;
    }
  }
  // Parameter gradients column-parallel, so every column sums its rows in row order.
  const i64 blocks = (cols + kColBlock - 1) / kColBlock;
#pragma omp parallel for schedule(static) if (par)
  for (i64 blk = 0; blk < blocks; ++blk) {
    const i64 c0 = blk * kColBlock, c1 = std::min(cols, c0 + kColBlock);
    double dw[kColBlock] = {}, db[kColBlock] = {};
    for (i64 r = 0; r < rows; ++r) {
      const T* x = in + r * cols;
      const T* g = dout + r * cols;
      const T m = mean[r], s = rstd[r];
      for (i64 c = c0; c < c1; ++c) {
        dw[c - c0] += static_cast<double>(g[c]) * ((x[c] - m) * s);
        db[c - c0] += g[c];
      }
    }
    for (i64 c = c0; c < c1; ++c) {
      dweight[c] += static_cast<T>(dw[c - c0]);
      dbias[c] += static_cast<T>(db[c - c0]);
    }
  }
}

// ---- softmax -------------------------------------------------------------------------------

template <typename T>
void softmax_forward(T* out, const T* in, i64 rows, i64 cols) {
  if constexpr (std::is_same_v<T, float>) {
    const auto fn = TR_ISA_PICK(softmax_rows_f32);
    if (rows * cols <= kParallelMin) {
      fn(out, in, 0, rows, cols);
      return;
    }
#pragma omp parallel for schedule(static)
    for (i64 r = 0; r < rows; ++r) fn(out, in, r, r + 1, cols);
    return;
  }
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (i64 r = 0; r < rows; ++r) {
    const T* x = in + r * cols;
    T* y = out + r * cols;
    T mx = -std::numeric_limits<T>::infinity();
    for (i64 c = 0; c < cols; ++c) mx = std::max(mx, x[c]);
    double sum = 0;
    for (i64 c = 0; c < cols; ++c) {
      y[c] = std::exp(x[c] - mx);
      sum += y[c];
    }
    const T inv = static_cast<T>(1.0 / sum);
    for (i64 c = 0; c < cols; ++c) y[c] *= inv;
  }
}

template <typename T>
void softmax_backward(T* din, const T* dout, const T* out, i64 rows, i64 cols) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (i64 r = 0; r < rows; ++r) {
    const T* g = dout + r * cols;
    const T* y = out + r * cols;
    T* dx = din + r * cols;
    double dot = 0;
    for (i64 c = 0; c < cols; ++c) dot += static_cast<double>(g[c]) * y[c];
    const T d = static_cast<T>(dot);
    for (i64 c = 0; c < cols; ++c) dx[c] = y[c] * (g[c] - d);
  }
}

// ---- embedding -----------------------------------------------------------------------------

template <typename T>
void embedding_forward(T* out, const std::int32_t* ids, const T* table, i64 N, i64 d, T scale) {
#pragma omp parallel for schedule(static) if (N * d > kParallelMin)
  for (i64 n = 0; n < N; ++n) {
    const T* src = table + static_cast<i64>(ids[n]) * d;
    T* dst = out + n * d;
    for (i64 c = 0; c < d; ++c) dst[c] = src[c] * scale;
  }
}

template <typename T>
void embedding_backward_accumulate(T* dtable, const std::int32_t* ids, const T* dout, i64 N, i64 d,
                                   T scale) {
  // Repeated ids make rows collide, so threads split the columns instead: each table entry is
  // updated by one thread, in token order.
  const i64 blocks = (d + kColBlock - 1) / kColBlock;
#pragma omp parallel for schedule(static) if (N * d > kParallelMin)
  for (i64 blk = 0; blk < blocks; ++blk) {
    const i64 c0 = blk * kColBlock, c1 = std::min(d, c0 + kColBlock);
    for (i64 n = 0; n < N; ++n) {
      T* dst = dtable + static_cast<i64>(ids[n]) * d;
      const T* g = dout + n * d;
      for (i64 c = c0; c < c1; ++c) dst[c] += g[c] * scale;
    }
  }
}

// ---- cross entropy -------------------------------------------------------------------------

template <typename T>
double cross_entropy_forward(T* loss, T* logsumexp, const T* logits, const std::int32_t* targets,
                             i64 N, i64 V, T eps, std::int32_t ignore_index) {
  const double e = static_cast<double>(eps);
  [[maybe_unused]] const auto row_stats = TR_ISA_PICK(ce_row_stats_f32);
#pragma omp parallel for schedule(static) if (N * V > kParallelMin)
  for (i64 n = 0; n < N; ++n) {
    const std::int32_t t = targets[n];
    if (t == ignore_index) {
      loss[n] = T(0);
      logsumexp[n] = T(0);
      continue;
    }
    const T* x = logits + n * V;
    T mx = -std::numeric_limits<T>::infinity();
    double sum = 0, sum_x = 0;
    if constexpr (std::is_same_v<T, float>) {
      row_stats(x, V, &mx, &sum, &sum_x);
    } else {
      for (i64 v = 0; v < V; ++v) mx = std::max(mx, x[v]);
      for (i64 v = 0; v < V; ++v) {
        sum += std::exp(static_cast<double>(x[v] - mx));
        sum_x += x[v];
      }
    }
    const double lse = static_cast<double>(mx) + std::log(sum);
    // -log p_v = lse - x_v, so the smoothed term is lse - mean(x).
    const double l =
        (1.0 - e) * (lse - static_cast<double>(x[t])) + e * (lse - sum_x / static_cast<double>(V));
    loss[n] = static_cast<T>(l);
    logsumexp[n] = static_cast<T>(lse);
  }
  double total = 0;
  for (i64 n = 0; n < N; ++n) total += static_cast<double>(loss[n]);
  return total;
}

template <typename T>
void cross_entropy_backward(T* dlogits, const T* logits, const T* logsumexp,
                            const std::int32_t* targets, i64 N, i64 V, T eps,
                            std::int32_t ignore_index, T scale) {
  const T smooth = eps / static_cast<T>(V);
  const T hit = T(1) - eps;
  [[maybe_unused]] const auto grad_row = TR_ISA_PICK(ce_grad_row_f32);
#pragma omp parallel for schedule(static) if (N * V > kParallelMin)
  for (i64 n = 0; n < N; ++n) {
    T* g = dlogits + n * V;
    const std::int32_t t = targets[n];
    if (t == ignore_index) {
      std::fill(g, g + V, T(0));
      continue;
    }
    const T* x = logits + n * V;
    const T lse = logsumexp[n];
    if constexpr (std::is_same_v<T, float>)
      grad_row(g, x, lse, scale, smooth, V);
    else
      for (i64 v = 0; v < V; ++v) g[v] = scale * (std::exp(x[v] - lse) - smooth);
    g[t] -= scale * hit;
  }
}

template <typename T>
void argmax_rows(std::int32_t* out, const T* x, i64 N, i64 V) {
#pragma omp parallel for schedule(static) if (N * V > kParallelMin)
  for (i64 n = 0; n < N; ++n) {
    const T* row = x + n * V;
    i64 best = 0;
    for (i64 v = 1; v < V; ++v)
      if (row[v] > row[best]) best = v;
    out[n] = static_cast<std::int32_t>(best);
  }
}

// ---- dropout -------------------------------------------------------------------------------

template <typename T>
void dropout_add(T* out, const T* skip, const T* in, const std::uint8_t* keep, T scale, i64 n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (i64 i = 0; i < n; ++i) out[i] = skip[i] + in[i] * (keep[i] ? scale : T(0));
}

template <typename T>
void dropout_apply(T* out, const T* in, const std::uint8_t* keep, T scale, i64 n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (i64 i = 0; i < n; ++i) out[i] = in[i] * (keep[i] ? scale : T(0));
}

// ---- instantiations ------------------------------------------------------------------------

#define TR_INSTANTIATE(T)                                                                         \
  template void gemm<T>(bool, bool, i64, i64, i64, T, const T*, i64, const T*, i64, T, T*, i64);  \
  template void bias_add<T>(T*, const T*, const T*, i64, i64);                                    \
  template void bias_fill<T>(T*, const T*, i64, i64);                                             \
  template void bias_backward_accumulate<T>(T*, const T*, i64, i64);                              \
  template void add<T>(T*, const T*, const T*, i64);                                              \
  template void add_accumulate<T>(T*, const T*, i64);                                             \
  template void scale<T>(T*, const T*, T, i64);                                                   \
  template void gelu_forward<T>(T*, const T*, i64);                                               \
  template void gelu_backward<T>(T*, const T*, const T*, i64, const T*);                          \
  template void gelu_tanh_forward<T>(T*, const T*, i64);                                          \
  template void gelu_tanh_backward<T>(T*, const T*, const T*, i64);                               \
  template void relu_forward<T>(T*, const T*, i64);                                               \
  template void relu_backward<T>(T*, const T*, const T*, i64);                                    \
  template void layernorm_forward<T>(T*, T*, T*, const T*, const T*, const T*, i64, i64, T);      \
  template void layernorm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,         \
                                      const T*, i64, i64, const T*);                              \
  template void softmax_forward<T>(T*, const T*, i64, i64);                                       \
  template void softmax_backward<T>(T*, const T*, const T*, i64, i64);                            \
  template void embedding_forward<T>(T*, const std::int32_t*, const T*, i64, i64, T);             \
  template void embedding_backward_accumulate<T>(T*, const std::int32_t*, const T*, i64, i64, T); \
  template double cross_entropy_forward<T>(T*, T*, const T*, const std::int32_t*, i64, i64, T,    \
                                           std::int32_t);                                         \
  template void cross_entropy_backward<T>(T*, const T*, const T*, const std::int32_t*, i64, i64,  \
                                          T, std::int32_t, T);                                    \
  template void argmax_rows<T>(std::int32_t*, const T*, i64, i64);                                \
  template void dropout_apply<T>(T*, const T*, const std::uint8_t*, T, i64);                      \
  template void dropout_add<T>(T*, const T*, const T*, const std::uint8_t*, T, i64);

TR_INSTANTIATE(float)
TR_INSTANTIATE(double)

#undef TR_INSTANTIATE

}  // namespace tr::cpu
