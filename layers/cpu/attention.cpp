// Multi-head attention on the CPU: per (batch, head) GEMMs that read the head's columns in
// place (leading dimension H*Dh), with scaling and masking fused into the softmax.
//
// Work split: when one head's GEMMs are small, OpenBLAS runs them on the calling thread, so
// OpenMP takes the (b, h) pairs in parallel. Above that size OpenBLAS would start its own
// threads inside each OpenMP thread; then the heads run one after another and the parallelism
// is OpenBLAS's (GEMMs) and OpenMP's over rows (softmax). Each output element is produced by
// one thread in a fixed order either way, so results do not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "layers/cpu/kernels.h"

namespace tr::cpu {

namespace {

// OpenBLAS (interface/gemm.c) keeps a GEMM single-threaded while M*N*K <= 65536 * 4.
constexpr double kBlasSingleThreadMnk = 65536.0 * 4.0;

// Keys visible to query row i: [0, limit).
inline i64 key_limit(i64 kv, i64 i, bool causal, i64 q_offset) {
  return causal ? std::max<i64>(0, std::min(kv, i + q_offset + 1)) : kv;
}

// Per-thread scratch for the dropped probabilities; kept across calls so a training step
// does not go back to the allocator once shapes have been seen.
template <typename T>
T* thread_buffer(i64 n) {
  thread_local std::vector<T> buf;
  if (static_cast<i64>(buf.size()) < n) buf.resize(static_cast<std::size_t>(n));
  return buf.data();
}

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

}  // namespace

template <typename T>
void attention_forward(T* out, T* probs, const T* q, const T* k, const T* v,
                       const std::int32_t* kv_len, const std::uint8_t* keep_mask, T keep_scale,
                       i64 B, i64 H, i64 Tq, i64 Tk, i64 Dh, bool causal, i64 q_offset) {
  const i64 ld = H * Dh;
  const bool small = static_cast<double>(Tq) * Tk * Dh <= kBlasSingleThreadMnk;
#pragma omp parallel for schedule(static) if (small && B * H > 1)
  for (i64 bh = 0; bh < B * H; ++bh) {
    const i64 b = bh / H, h = bh % H;
    const i64 kv = kv_len ? std::clamp<i64>(kv_len[b], 0, Tk) : Tk;
    const i64 po = bh * Tq * Tk;
    head_forward<T>(out + b * Tq * ld + h * Dh, probs + po, q + b * Tq * ld + h * Dh,
                    k + b * Tk * ld + h * Dh, v + b * Tk * ld + h * Dh, kv,
                    keep_mask ? keep_mask + po : nullptr, keep_scale, Tq, Tk, ld, Dh, causal,
                    q_offset, !small);
  }
}

template <typename T>
void attention_backward(T* dq, T* dk, T* dv, T* scratch, const T* dout, const T* probs, const T* q,
                        const T* k, const T* v, const std::uint8_t* keep_mask, T keep_scale, i64 B,
                        i64 H, i64 Tq, i64 Tk, i64 Dh) {
  const i64 ld = H * Dh;
  const bool small = static_cast<double>(Tq) * Tk * Dh <= kBlasSingleThreadMnk;
#pragma omp parallel for schedule(static) if (small && B * H > 1)
  for (i64 bh = 0; bh < B * H; ++bh) {
    const i64 b = bh / H, h = bh % H;
    const i64 po = bh * Tq * Tk;
    const i64 qo = b * Tq * ld + h * Dh, ko = b * Tk * ld + h * Dh;
    head_backward<T>(dq + qo, dk + ko, dv + ko, scratch + po, dout + qo, probs + po, q + qo, k + ko,
                     v + ko, keep_mask ? keep_mask + po : nullptr, keep_scale, Tq, Tk, ld, Dh,
                     !small);
  }
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
