// Multi-head attention on the CPU, scaling and masking fused into the softmax. Two paths:
// - fused (small heads, the common case): per (batch, head) register-tiled products written
//   here, everything of one head on one thread; see "fused path" below.
// - BLAS (large heads): per (batch, head) GEMMs that read the head's columns in place
//   (leading dimension H*Dh).
//
// BLAS path work split: when one head's GEMMs are small, OpenBLAS runs them on the calling thread,
// so OpenMP takes the (b, h) pairs in parallel. Above that size OpenBLAS would start its own
// threads inside each OpenMP thread; then the heads run one after another and the parallelism
// is OpenBLAS's (GEMMs) and OpenMP's over rows (softmax). Each output element is produced by
// one thread in a fixed order either way, so results do not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "layers/cpu/attention_common.h"
#include "layers/cpu/bf16.h"
#include "layers/cpu/kernels.h"
#include "layers/cpu/simd.h"
#include "layers/cpu/vec_math.h"

namespace tr::cpu {

namespace {

using attention_detail::for_each_head;
using attention_detail::HeadSlice;
using attention_detail::kBlasSingleThreadMnk;
using attention_detail::key_limit;
using attention_detail::thread_buffer;

// dst[i, j] = p[i, j] * keep[i, j] * keep_scale over a Tq x cols block with row stride Tk.
template <typename T>
void apply_keep(T* dst, const T* p, const std::uint8_t* keep, T keep_scale, i64 Tq, i64 cols,
                i64 Tk) {
  for (i64 i = 0; i < Tq; ++i) {
    const T* pr = p + i * Tk;
    const std::uint8_t* kr = keep + i * Tk;
    T* dr = dst + i * Tk;
    for (i64 j = 0; j < cols; ++j) dr[j] = pr[j] * (kr[j] ? keep_scale : T(0));
  }
}

template <typename T>
void head_forward(T* out, T* probs, const T* q, const T* k, const T* v, i64 kv,
                  const std::uint8_t* keep, T keep_scale, i64 Tq, i64 Tk, i64 ld, i64 Dh,
                  bool causal, i64 q_offset, bool parallel_rows) {
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(Dh)));
  // Scores only for keys that exist; columns >= kv are set to 0 by the softmax pass.
  gemm<T>(false, true, Tq, kv, Dh, scale, q, ld, k, ld, T(0), probs, Tk);
#pragma omp parallel for schedule(static) if (parallel_rows)
  for (i64 i = 0; i < Tq; ++i) {
    T* row = probs + i * Tk;
    const i64 limit = key_limit(kv, i, causal, q_offset);
    if (limit > 0) {
      T mx = -std::numeric_limits<T>::infinity();
      for (i64 j = 0; j < limit; ++j) mx = std::max(mx, row[j]);
      double sum = 0;
      for (i64 j = 0; j < limit; ++j) {
        row[j] = std::exp(row[j] - mx);
        sum += row[j];
      }
      const T inv = static_cast<T>(1.0 / sum);
      for (i64 j = 0; j < limit; ++j) row[j] *= inv;
    }
    // A query with no visible key gets zero probabilities (and output), not NaN.
    std::fill(row + limit, row + Tk, T(0));
  }
  const T* p = probs;
  if (keep != nullptr) {
    T* dropped = thread_buffer<T>(Tq * Tk);
    apply_keep(dropped, probs, keep, keep_scale, Tq, kv, Tk);
    p = dropped;
  }
  gemm<T>(false, false, Tq, Dh, kv, T(1), p, Tk, v, ld, T(0), out, ld);
}

template <typename T>
void head_backward(T* dq, T* dk, T* dv, T* ds, const T* dout, const T* probs, const T* q,
                   const T* k, const T* v, const std::uint8_t* keep, T keep_scale, i64 Tq, i64 Tk,
                   i64 ld, i64 Dh, bool parallel_rows) {
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(Dh)));
  // dv = dropped(P)^T dout
  const T* p = probs;
  if (keep != nullptr) {
    T* dropped = thread_buffer<T>(Tq * Tk);
    apply_keep(dropped, probs, keep, keep_scale, Tq, Tk, Tk);
    p = dropped;
  }
  gemm<T>(true, false, Tk, Dh, Tq, T(1), p, Tk, dout, ld, T(0), dv, ld);
  // d(dropped P) = dout v^T, then back through the mask and the softmax:
  // dS = P * (dP - rowsum(dP * P)); the 1/sqrt(Dh) goes into the GEMMs' alpha.
  gemm<T>(false, true, Tq, Tk, Dh, T(1), dout, ld, v, ld, T(0), ds, Tk);
#pragma omp parallel for schedule(static) if (parallel_rows)
  for (i64 i = 0; i < Tq; ++i) {
    T* d = ds + i * Tk;
    const T* pr = probs + i * Tk;
    if (keep != nullptr) {
      const std::uint8_t* kr = keep + i * Tk;
      for (i64 j = 0; j < Tk; ++j) d[j] *= kr[j] ? keep_scale : T(0);
    }
    double dot = 0;
    for (i64 j = 0; j < Tk; ++j) dot += static_cast<double>(d[j]) * pr[j];
    const T r = static_cast<T>(dot);
    for (i64 j = 0; j < Tk; ++j) d[j] = pr[j] * (d[j] - r);
  }
  gemm<T>(false, false, Tq, Dh, Tk, scale, ds, Tk, k, ld, T(0), dq, ld);
  gemm<T>(true, false, Tk, Dh, Tq, scale, ds, Tk, q, ld, T(0), dk, ld);
}

// ---- fused path: own register-tiled GEMMs per (batch, head) -------------------------------
//
// For the small heads of the reference models (Tk ~ 32-64, Dh ~ 24-64) a BLAS call per head and
// product costs more in call, packing and beta-pass overhead than the product itself. Here one
// (b, h) pair runs start to finish on one thread: K^T (or V^T) is packed once into a
// thread-local buffer, the score block stays in cache from the QK^T product through the
// softmax to the PV product, and OpenMP splits the (b, h) pairs.

// Fused when a head's K (or V) fits comfortably in L2; beyond, BLAS's cache blocking wins.
constexpr i64 kFusedMaxKeyElements = 32768;
constexpr i64 kFusedMaxHeadDim = 256;
// Total multiply-adds below which the (b, h) loop stays on the calling thread.
constexpr double kFusedParallelMin = 1 << 15;

// Under bf16 products every product must go through gemm<float> (which rounds the operands),
// so the fused small-GEMM path is off then.
inline bool use_fused(i64 Tk, i64 Dh) {
  return Dh <= kFusedMaxHeadDim && Tk * Dh <= kFusedMaxKeyElements && !bf16_products();
}

template <typename T>
TR_INLINE T exp_t(T x) {
  if constexpr (std::is_same_v<T, float>)
    return vm::exp_f(x);
  else
    return std::exp(x);
}

// dst[r, c] = src[c * ld + r] for r < rows, c < cols; columns [cols, ldd) of dst zeroed.
template <typename T>
TR_INLINE void pack_transposed(T* dst, i64 ldd, const T* src, i64 ld, i64 rows, i64 cols) {
  simd::transpose(dst, ldd, src, ld, rows, cols);
  for (i64 r = 0; r < rows; ++r)
    for (i64 c = cols; c < ldd; ++c) dst[r * ldd + c] = T(0);
}

// Rows of a [rows, Dh] head slice (row stride ld) as a GEMM B operand: in place when Dh is a
// whole number of vectors, else copied into `buf` with zero padding. Returns the row stride.
template <typename T>
TR_INLINE const T* head_rows(T* buf, const T* src, i64 ld, i64 rows, i64 Dh, i64* ldb) {
  if (Dh % simd::Vec<T>::lanes == 0) {
    *ldb = ld;
    return src;
  }
  const i64 Dp = simd::round_up_lanes<T>(Dh);
  for (i64 r = 0; r < rows; ++r) {
    for (i64 d = 0; d < Dh; ++d) buf[r * Dp + d] = src[r * ld + d];
    for (i64 d = Dh; d < Dp; ++d) buf[r * Dp + d] = T(0);
  }
  *ldb = Dp;
  return buf;
}

template <typename T>
TR_INLINE void fused_head_forward(T* out, T* probs, const T* q, const T* k, const T* v, i64 kv,
                                  const std::uint8_t* keep, T keep_scale, i64 Tq, i64 Tk, i64 ld,
                                  i64 Dh, bool causal, i64 q_offset) {
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(Dh)));
  const i64 Tkp = simd::round_up_lanes<T>(Tk), Dp = simd::round_up_lanes<T>(Dh);
  T* kt = thread_buffer<T>(Dh * Tkp + Tk * Dp + Tq * Tk);
  T* vbuf = kt + Dh * Tkp;
  T* dropped = vbuf + Tk * Dp;
  // S = scale * Q K^T over the keys that exist (columns >= kv are zeroed below).
  pack_transposed(kt, Tkp, k, ld, Dh, kv);
  simd::small_gemm<T>(probs, Tk, q, ld, 1, kt, Tkp, Tq, kv, Dh, scale);
  for (i64 i = 0; i < Tq; ++i) {
    T* row = probs + i * Tk;
    const i64 limit = key_limit(kv, i, causal, q_offset);
    if (limit > 0) {
      const T mx = simd::max(row, limit);
      for (i64 j = 0; j < limit; ++j) row[j] = exp_t(row[j] - mx);
      const T inv = T(1) / simd::sum(row, limit);
      for (i64 j = 0; j < limit; ++j) row[j] *= inv;
    }
    // A query with no visible key gets zero probabilities (and output), not NaN.
    for (i64 j = limit; j < Tk; ++j) row[j] = T(0);
  }
  const T* p = probs;
  if (keep != nullptr) {
    for (i64 i = 0; i < Tq; ++i)
      for (i64 j = 0; j < kv; ++j)
        dropped[i * Tk + j] = probs[i * Tk + j] * (keep[i * Tk + j] ? keep_scale : T(0));
    p = dropped;
  }
  i64 ldv;
  const T* vb = head_rows(vbuf, v, ld, kv, Dh, &ldv);
  simd::small_gemm<T>(out, ld, p, Tk, 1, vb, ldv, Tq, Dh, kv, T(1));
}

template <typename T>
TR_INLINE void fused_head_backward(T* dq, T* dk, T* dv, T* ds, const T* dout, const T* probs,
                                   const T* q, const T* k, const T* v, const std::uint8_t* keep,
                                   T keep_scale, i64 Tq, i64 Tk, i64 ld, i64 Dh) {
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(Dh)));
  const i64 Tkp = simd::round_up_lanes<T>(Tk), Dp = simd::round_up_lanes<T>(Dh);
  T* vt = thread_buffer<T>(Dh * Tkp + Tk * Dp + 2 * Tq * Dp + Tq * Tk);
  T* kbuf = vt + Dh * Tkp;
  T* qbuf = kbuf + Tk * Dp;
  T* obuf = qbuf + Tq * Dp;
  T* dropped = obuf + Tq * Dp;
  // d(dropped P) = dout V^T
  pack_transposed(vt, Tkp, v, ld, Dh, Tk);
  simd::small_gemm<T>(ds, Tk, dout, ld, 1, vt, Tkp, Tq, Tk, Dh, T(1));
  // Back through the mask and the softmax: dS = P * (dP - rowsum(dP * P)).
  for (i64 i = 0; i < Tq; ++i) {
    T* d = ds + i * Tk;
    const T* pr = probs + i * Tk;
    if (keep != nullptr) {
      const std::uint8_t* kr = keep + i * Tk;
      for (i64 j = 0; j < Tk; ++j) d[j] *= kr[j] ? keep_scale : T(0);
    }
    const T r = simd::dot(d, pr, Tk);
    for (i64 j = 0; j < Tk; ++j) d[j] = pr[j] * (d[j] - r);
  }
  // dq = scale dS K;  dk = scale dS^T Q;  dv = dropped(P)^T dout.
  i64 ldk, ldq, ldo;
  const T* kb = head_rows(kbuf, k, ld, Tk, Dh, &ldk);
  simd::small_gemm<T>(dq, ld, ds, Tk, 1, kb, ldk, Tq, Dh, Tk, scale);
  const T* qb = head_rows(qbuf, q, ld, Tq, Dh, &ldq);
  simd::small_gemm<T>(dk, ld, ds, 1, Tk, qb, ldq, Tk, Dh, Tq, scale);
  const T* p = probs;
  if (keep != nullptr) {
    for (i64 i = 0; i < Tq * Tk; ++i) dropped[i] = probs[i] * (keep[i] ? keep_scale : T(0));
    p = dropped;
  }
  const T* ob = head_rows(obuf, dout, ld, Tq, Dh, &ldo);
  simd::small_gemm<T>(dv, ld, p, 1, Tk, ob, ldo, Tk, Dh, Tq, T(1));
}

template <typename T>
using FusedForward = void (*)(T*, T*, const T*, const T*, const T*, i64, const std::uint8_t*, T,
                              i64, i64, i64, i64, bool, i64);
template <typename T>
using FusedBackward = void (*)(T*, T*, T*, T*, const T*, const T*, const T*, const T*, const T*,
                               const std::uint8_t*, T, i64, i64, i64, i64);

template <typename T>
TR_TARGET_AVX2 void fused_forward_avx2(T* out, T* probs, const T* q, const T* k, const T* v, i64 kv,
                                       const std::uint8_t* keep, T keep_scale, i64 Tq, i64 Tk,
                                       i64 ld, i64 Dh, bool causal, i64 q_offset) {
  fused_head_forward<T>(out, probs, q, k, v, kv, keep, keep_scale, Tq, Tk, ld, Dh, causal,
                        q_offset);
}
template <typename T>
void fused_forward_base(T* out, T* probs, const T* q, const T* k, const T* v, i64 kv,
                        const std::uint8_t* keep, T keep_scale, i64 Tq, i64 Tk, i64 ld, i64 Dh,
                        bool causal, i64 q_offset) {
  fused_head_forward<T>(out, probs, q, k, v, kv, keep, keep_scale, Tq, Tk, ld, Dh, causal,
                        q_offset);
}
template <typename T>
TR_TARGET_AVX2 void fused_backward_avx2(T* dq, T* dk, T* dv, T* ds, const T* dout, const T* probs,
                                        const T* q, const T* k, const T* v,
                                        const std::uint8_t* keep, T keep_scale, i64 Tq, i64 Tk,
                                        i64 ld, i64 Dh) {
  fused_head_backward<T>(dq, dk, dv, ds, dout, probs, q, k, v, keep, keep_scale, Tq, Tk, ld, Dh);
}
template <typename T>
void fused_backward_base(T* dq, T* dk, T* dv, T* ds, const T* dout, const T* probs, const T* q,
                         const T* k, const T* v, const std::uint8_t* keep, T keep_scale, i64 Tq,
                         i64 Tk, i64 ld, i64 Dh) {
  fused_head_backward<T>(dq, dk, dv, ds, dout, probs, q, k, v, keep, keep_scale, Tq, Tk, ld, Dh);
}

template <typename T>
FusedForward<T> fused_forward_variant() {
  return cpu_has_avx2_fma() ? &fused_forward_avx2<T> : &fused_forward_base<T>;
}
template <typename T>
FusedBackward<T> fused_backward_variant() {
  return cpu_has_avx2_fma() ? &fused_backward_avx2<T> : &fused_backward_base<T>;
}

}  // namespace

template <typename T>
void attention_forward(T* out, T* probs, const T* q, const T* k, const T* v,
                       const std::int32_t* kv_len, const std::uint8_t* keep_mask, T keep_scale,
                       i64 B, i64 H, i64 Tq, i64 Tk, i64 Dh, bool causal, i64 q_offset) {
  const i64 ld = H * Dh;
  if (use_fused(Tk, Dh)) {
    const FusedForward<T> head = fused_forward_variant<T>();
    const bool par = B * H > 1 && static_cast<double>(B * H) * Tq * Tk * Dh > kFusedParallelMin;
    for_each_head(B, H, Tq, Tk, Dh, kv_len, par, [&](const HeadSlice& s) {
      const i64 po = s.bh * Tq * Tk;
      head(out + s.q, probs + po, q + s.q, k + s.k, v + s.k, s.kv,
           keep_mask ? keep_mask + po : nullptr, keep_scale, Tq, Tk, ld, Dh, causal, q_offset);
    });
    return;
  }
  const bool small = static_cast<double>(Tq) * Tk * Dh <= kBlasSingleThreadMnk;
  for_each_head(B, H, Tq, Tk, Dh, kv_len, small && B * H > 1, [&](const HeadSlice& s) {
    const i64 po = s.bh * Tq * Tk;
    head_forward<T>(out + s.q, probs + po, q + s.q, k + s.k, v + s.k, s.kv,
                    keep_mask ? keep_mask + po : nullptr, keep_scale, Tq, Tk, ld, Dh, causal,
                    q_offset, !small);
  });
}

template <typename T>
void attention_backward(T* dq, T* dk, T* dv, T* scratch, const T* dout, const T* probs, const T* q,
                        const T* k, const T* v, const std::uint8_t* keep_mask, T keep_scale, i64 B,
                        i64 H, i64 Tq, i64 Tk, i64 Dh) {
  const i64 ld = H * Dh;
  if (use_fused(Tk, Dh)) {
    const FusedBackward<T> head = fused_backward_variant<T>();
    const bool par = B * H > 1 && static_cast<double>(B * H) * Tq * Tk * Dh > kFusedParallelMin;
    for_each_head(B, H, Tq, Tk, Dh, nullptr, par, [&](const HeadSlice& s) {
      const i64 po = s.bh * Tq * Tk;
      head(dq + s.q, dk + s.k, dv + s.k, scratch + po, dout + s.q, probs + po, q + s.q, k + s.k,
           v + s.k, keep_mask ? keep_mask + po : nullptr, keep_scale, Tq, Tk, ld, Dh);
    });
    return;
  }
  const bool small = static_cast<double>(Tq) * Tk * Dh <= kBlasSingleThreadMnk;
  for_each_head(B, H, Tq, Tk, Dh, nullptr, small && B * H > 1, [&](const HeadSlice& s) {
    const i64 po = s.bh * Tq * Tk;
    head_backward<T>(dq + s.q, dk + s.k, dv + s.k, scratch + po, dout + s.q, probs + po, q + s.q,
                     k + s.k, v + s.k, keep_mask ? keep_mask + po : nullptr, keep_scale, Tq, Tk, ld,
                     Dh, !small);
  });
}

template void attention_forward<float>(float*, float*, const float*, const float*, const float*,
                                       const std::int32_t*, const std::uint8_t*, float, i64, i64,
                                       i64, i64, i64, bool, i64);
template void attention_forward<double>(double*, double*, const double*, const double*,
                                        const double*, const std::int32_t*, const std::uint8_t*,
                                        double, i64, i64, i64, i64, i64, bool, i64);
template void attention_backward<float>(float*, float*, float*, float*, const float*, const float*,
                                        const float*, const float*, const float*,
                                        const std::uint8_t*, float, i64, i64, i64, i64, i64);
template void attention_backward<double>(double*, double*, double*, double*, const double*,
                                         const double*, const double*, const double*, const double*,
                                         const std::uint8_t*, double, i64, i64, i64, i64, i64);

}  // namespace tr::cpu
