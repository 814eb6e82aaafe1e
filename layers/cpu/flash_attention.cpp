// Attention that keeps no probabilities (the CPU twin of the CUDA flash kernels): the forward
// keeps the log-sum-exp of each scaled, masked score row; the backward recomputes the
// probabilities from q, k and that log-sum-exp, and takes rowsum(dP * P) as rowsum(dout * out)
// (the same number when out = dropped(P) v; FlashAttention-2's identity). Per (batch, head)
// GEMMs reading the heads in place, as the BLAS path of attention.cpp; each (b, h) pair is one
// thread's work in a fixed order, so results do not depend on the thread count.
//
// On the CPU it is the reference the CUDA kernels are checked against (tests/gpu) and is itself
// checked against attention_forward/attention_backward (tests/layers/test_flash_attention.cpp).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "layers/cpu/attention_common.h"
#include "layers/cpu/kernels.h"

namespace tr::cpu {

namespace {

using attention_detail::for_each_head;
using attention_detail::HeadSlice;
using attention_detail::kBlasSingleThreadMnk;
using attention_detail::key_limit;
using attention_detail::thread_buffer;

// p[i, j] = exp(s[i, j] - lse[i]) over the visible keys of each row, 0 elsewhere (s [Tq, Tk]
// holds the scaled scores of the keys < kv).
template <typename T>
void probabilities_from_lse(T* p, const T* lse, i64 kv, i64 Tq, i64 Tk, bool causal, i64 q_offset) {
  for (i64 i = 0; i < Tq; ++i) {
    T* row = p + i * Tk;
    const i64 limit = key_limit(kv, i, causal, q_offset);
    for (i64 j = 0; j < limit; ++j) row[j] = std::exp(row[j] - lse[i]);
    std::fill(row + limit, row + Tk, T(0));
  }
}

template <typename T>
void head_forward(T* out, T* lse, const T* q, const T* k, const T* v, i64 kv,
                  const std::uint8_t* keep, T keep_scale, i64 Tq, i64 Tk, i64 ld, i64 Dh,
                  bool causal, i64 q_offset) {
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(Dh)));
  T* p = thread_buffer<T>(Tq * Tk);
  if (kv > 0) gemm<T>(false, true, Tq, kv, Dh, scale, q, ld, k, ld, T(0), p, Tk);
  for (i64 i = 0; i < Tq; ++i) {
    const T* row = p + i * Tk;
    const i64 limit = key_limit(kv, i, causal, q_offset);
    if (limit == 0) {  // no visible key: zero probabilities, so exp(s - lse) must be 0
      lse[i] = std::numeric_limits<T>::infinity();
      continue;
    }
    T mx = -std::numeric_limits<T>::infinity();
    for (i64 j = 0; j < limit; ++j) mx = std::max(mx, row[j]);
    double sum = 0;
    for (i64 j = 0; j < limit; ++j) sum += std::exp(static_cast<double>(row[j] - mx));
    lse[i] = static_cast<T>(mx + std::log(sum));
  }
  probabilities_from_lse(p, lse, kv, Tq, Tk, causal, q_offset);
  if (keep != nullptr)
    for (i64 n = 0; n < Tq * Tk; ++n) p[n] *= keep[n] ? keep_scale : T(0);
  gemm<T>(false, false, Tq, Dh, Tk, T(1), p, Tk, v, ld, T(0), out, ld);
}

template <typename T>
void head_backward(T* dq, T* dk, T* dv, const T* dout, const T* out, const T* lse, const T* q,
                   const T* k, const T* v, i64 kv, const std::uint8_t* keep, T keep_scale, i64 Tq,
                   i64 Tk, i64 ld, i64 Dh, bool causal, i64 q_offset) {
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(Dh)));
  T* p = thread_buffer<T>(2 * Tq * Tk + Tq);
  T* ds = p + Tq * Tk;
  T* rowdot = ds + Tq * Tk;
  // P again, from the scores and the kept log-sum-exp.
  if (kv > 0) gemm<T>(false, true, Tq, kv, Dh, scale, q, ld, k, ld, T(0), p, Tk);
  probabilities_from_lse(p, lse, kv, Tq, Tk, causal, q_offset);
  // dP = dout v^T (through the dropout mask below); rowsum(dP * P) = rowsum(dout * out).
  gemm<T>(false, true, Tq, Tk, Dh, T(1), dout, ld, v, ld, T(0), ds, Tk);
  for (i64 i = 0; i < Tq; ++i) {
    double dot = 0;
    for (i64 c = 0; c < Dh; ++c)
      dot += static_cast<double>(dout[i * ld + c]) * static_cast<double>(out[i * ld + c]);
    rowdot[i] = static_cast<T>(dot);
  }
  for (i64 i = 0; i < Tq; ++i)
    for (i64 j = 0; j < Tk; ++j) {
      const i64 n = i * Tk + j;
      const T mask = keep == nullptr ? T(1) : (keep[n] ? keep_scale : T(0));
      ds[n] = p[n] * (ds[n] * mask - rowdot[i]);
      p[n] *= mask;  // now dropped(P), dv's operand
    }
  gemm<T>(true, false, Tk, Dh, Tq, T(1), p, Tk, dout, ld, T(0), dv, ld);
  gemm<T>(false, false, Tq, Dh, Tk, scale, ds, Tk, k, ld, T(0), dq, ld);
  gemm<T>(true, false, Tk, Dh, Tq, scale, ds, Tk, q, ld, T(0), dk, ld);
}

}  // namespace

template <typename T>
void flash_attention_forward(T* out, T* lse, const T* q, const T* k, const T* v,
                             const std::int32_t* kv_len, const std::uint8_t* keep_mask,
                             T keep_scale, i64 B, i64 H, i64 Tq, i64 Tk, i64 Dh, bool causal,
                             i64 q_offset) {
  const i64 ld = H * Dh;
  const bool small = static_cast<double>(Tq) * Tk * Dh <= kBlasSingleThreadMnk;
  for_each_head(B, H, Tq, Tk, Dh, kv_len, small && B * H > 1, [&](const HeadSlice& s) {
    head_forward<T>(out + s.q, lse + s.bh * Tq, q + s.q, k + s.k, v + s.k, s.kv,
                    keep_mask ? keep_mask + s.bh * Tq * Tk : nullptr, keep_scale, Tq, Tk, ld, Dh,
                    causal, q_offset);
  });
}

template <typename T>
void flash_attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* out, const T* lse,
                              const T* q, const T* k, const T* v, const std::int32_t* kv_len,
                              const std::uint8_t* keep_mask, T keep_scale, i64 B, i64 H, i64 Tq,
                              i64 Tk, i64 Dh, bool causal, i64 q_offset) {
  const i64 ld = H * Dh;
  const bool small = static_cast<double>(Tq) * Tk * Dh <= kBlasSingleThreadMnk;
  for_each_head(B, H, Tq, Tk, Dh, kv_len, small && B * H > 1, [&](const HeadSlice& s) {
    head_backward<T>(dq + s.q, dk + s.k, dv + s.k, dout + s.q, out + s.q, lse + s.bh * Tq, q + s.q,
                     k + s.k, v + s.k, s.kv, keep_mask ? keep_mask + s.bh * Tq * Tk : nullptr,
                     keep_scale, Tq, Tk, ld, Dh, causal, q_offset);
  });
}

#define TR_INSTANTIATE_FLASH(T)                                                                    \
  template void flash_attention_forward<T>(T*, T*, const T*, const T*, const T*,                   \
                                           const std::int32_t*, const std::uint8_t*, T, i64, i64,  \
                                           i64, i64, i64, bool, i64);                              \
  template void flash_attention_backward<T>(                                                       \
      T*, T*, T*, const T*, const T*, const T*, const T*, const T*, const T*, const std::int32_t*, \
      const std::uint8_t*, T, i64, i64, i64, i64, i64, bool, i64);
TR_INSTANTIATE_FLASH(float)
TR_INSTANTIATE_FLASH(double)
#undef TR_INSTANTIATE_FLASH

}  // namespace tr::cpu
