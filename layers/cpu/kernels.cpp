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

}  // namespace

// ---- GEMM ----------------------------------------------------------------------------------

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
void bias_backward_accumulate(T* dbias, const T* dout, i64 rows, i64 cols) {
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
  const T inv_sqrt2 = static_cast<T>(0.70710678118654752440084436210485);
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (i64 i = 0; i < n; ++i) {
    const T x = in[i];
    out[i] = T(0.5) * x * (T(1) + std::erf(x * inv_sqrt2));
  }
}

template <typename T>
void gelu_backward(T* din, const T* dout, const T* in, i64 n) {
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

template <typename T>
void relu_forward(T* out, const T* in, i64 n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (i64 i = 0; i < n; ++i) out[i] = in[i] > T(0) ? in[i] : T(0);
}

template <typename T>
void relu_backward(T* din, const T* dout, const T* in, i64 n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (i64 i = 0; i < n; ++i) din[i] = in[i] > T(0) ? dout[i] : T(0);
}

// ---- LayerNorm -----------------------------------------------------------------------------

template <typename T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* in, const T* weight, const T* bias,
                       i64 rows, i64 cols, T eps) {
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
                        const T* mean, const T* rstd, i64 rows, i64 cols) {
  const bool par = rows * cols > kParallelMin;
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
    for (i64 c = 0; c < cols; ++c) {
      const T xhat = (x[c] - m) * s;
      dx[c] = s * (g[c] * weight[c] - a - xhat * b);
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
    for (i64 v = 0; v < V; ++v) mx = std::max(mx, x[v]);
    double sum = 0, sum_x = 0;
    for (i64 v = 0; v < V; ++v) {
      sum += std::exp(static_cast<double>(x[v] - mx));
      sum_x += x[v];
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
    for (i64 v = 0; v < V; ++v) g[v] = scale * (std::exp(x[v] - lse) - smooth);
    g[t] -= scale * hit;
  }
}

// ---- dropout -------------------------------------------------------------------------------

template <typename T>
void dropout_apply(T* out, const T* in, const std::uint8_t* keep, T scale, i64 n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (i64 i = 0; i < n; ++i) out[i] = in[i] * (keep[i] ? scale : T(0));
}

// ---- instantiations ------------------------------------------------------------------------

#define TR_INSTANTIATE(T)                                                                         \
  template void gemm<T>(bool, bool, i64, i64, i64, T, const T*, i64, const T*, i64, T, T*, i64);  \
  template void bias_add<T>(T*, const T*, const T*, i64, i64);                                    \
  template void bias_backward_accumulate<T>(T*, const T*, i64, i64);                              \
  template void add<T>(T*, const T*, const T*, i64);                                              \
  template void add_accumulate<T>(T*, const T*, i64);                                             \
  template void scale<T>(T*, const T*, T, i64);                                                   \
  template void gelu_forward<T>(T*, const T*, i64);                                               \
  template void gelu_backward<T>(T*, const T*, const T*, i64);                                    \
  template void relu_forward<T>(T*, const T*, i64);                                               \
  template void relu_backward<T>(T*, const T*, const T*, i64);                                    \
  template void layernorm_forward<T>(T*, T*, T*, const T*, const T*, const T*, i64, i64, T);      \
  template void layernorm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,         \
                                      const T*, i64, i64);                                        \
  template void softmax_forward<T>(T*, const T*, i64, i64);                                       \
  template void softmax_backward<T>(T*, const T*, const T*, i64, i64);                            \
  template void embedding_forward<T>(T*, const std::int32_t*, const T*, i64, i64, T);             \
  template void embedding_backward_accumulate<T>(T*, const std::int32_t*, const T*, i64, i64, T); \
  template double cross_entropy_forward<T>(T*, T*, const T*, const std::int32_t*, i64, i64, T,    \
                                           std::int32_t);                                         \
  template void cross_entropy_backward<T>(T*, const T*, const T*, const std::int32_t*, i64, i64,  \
                                          T, std::int32_t, T);                                    \
  template void dropout_apply<T>(T*, const T*, const std::uint8_t*, T, i64);

TR_INSTANTIATE(float)
TR_INSTANTIATE(double)

#undef TR_INSTANTIATE

}  // namespace tr::cpu
