// Kernels of the tensor-parallel modules: vocabulary-sharded embedding lookups and the local
// passes of the vocabulary-parallel cross entropy (the collectives between them live in the
// modules). Rows are independent, so threads split rows (or, where rows collide, columns) and
// every sum keeps its fixed order.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "layers/cpu/kernels.h"

namespace tr::cpu {

namespace {
constexpr i64 kParallelMin = 1 << 15;  // elements below which a loop stays on one thread
constexpr i64 kColBlock = 64;          // columns per thread in the embedding backward
}  // namespace

template <typename T>
void embedding_forward_shard(T* out, const std::int32_t* ids, const T* table, i64 N, i64 d,
                             i64 first, i64 V_local, T scale) {
#pragma omp parallel for schedule(static) if (N * d > kParallelMin)
  for (i64 n = 0; n < N; ++n) {
    const i64 row = static_cast<i64>(ids[n]) - first;
    T* dst = out + n * d;
    if (row < 0 || row >= V_local) {
      std::fill(dst, dst + d, T(0));
      continue;
    }
    const T* src = table + row * d;
    for (i64 c = 0; c < d; ++c) dst[c] = src[c] * scale;
  }
}

template <typename T>
void embedding_backward_shard_accumulate(T* dtable, const std::int32_t* ids, const T* dout, i64 N,
                                         i64 d, i64 first, i64 V_local, T scale) {
  // Repeated ids collide, so threads split the columns; each entry is updated in token order.
  const i64 blocks = (d + kColBlock - 1) / kColBlock;
#pragma omp parallel for schedule(static) if (N * d > kParallelMin)
  for (i64 blk = 0; blk < blocks; ++blk) {
    const i64 c0 = blk * kColBlock, c1 = std::min(d, c0 + kColBlock);
    for (i64 n = 0; n < N; ++n) {
      const i64 row = static_cast<i64>(ids[n]) - first;
      if (row < 0 || row >= V_local) continue;
      T* dst = dtable + row * d;
      const T* g = dout + n * d;
      for (i64 c = c0; c < c1; ++c) dst[c] += g[c] * scale;
    }
  }
}

template <typename T>
void ce_shard_max(double* row_max, const T* logits, i64 N, i64 V_local, i64 valid) {
#pragma omp parallel for schedule(static) if (N * V_local > kParallelMin)
  for (i64 n = 0; n < N; ++n) {
    const T* x = logits + n * V_local;
    double m = -std::numeric_limits<double>::infinity();
    for (i64 v = 0; v < valid; ++v) m = std::max(m, static_cast<double>(x[v]));
    row_max[n] = m;
  }
}

template <typename T>
void ce_shard_sums(double* sums, const T* logits, const std::int32_t* targets,
                   const double* row_max, i64 N, i64 V_local, i64 valid, i64 first,
                   std::int32_t ignore_index) {
#pragma omp parallel for schedule(static) if (N * V_local > kParallelMin)
  for (i64 n = 0; n < N; ++n) {
    double sum_exp = 0, target = 0, sum_x = 0;
    if (targets[n] != ignore_index) {
      const T* x = logits + n * V_local;
      for (i64 v = 0; v < valid; ++v) {
        const double xv = static_cast<double>(x[v]);
        sum_exp += std::exp(xv - row_max[n]);
        sum_x += xv;
      }
      const i64 t = static_cast<i64>(targets[n]) - first;
      if (t >= 0 && t < valid) target = static_cast<double>(x[t]);
    }
    sums[n] = sum_exp;
    sums[N + n] = target;
    sums[2 * N + n] = sum_x;
  }
}

template <typename T>
void ce_shard_backward(T* dlogits, const T* logits, const double* logsumexp,
                       const std::int32_t* targets, i64 N, i64 V_local, i64 valid, i64 first, i64 V,
                       T eps, std::int32_t ignore_index, T scale) {
  const double smooth = static_cast<double>(eps) / static_cast<double>(V);
  const double hit = 1.0 - static_cast<double>(eps);
  const double s = static_cast<double>(scale);
#pragma omp parallel for schedule(static) if (N * V_local > kParallelMin)
  for (i64 n = 0; n < N; ++n) {
    // Each element written after its own logit is read: dlogits may be logits (in place).
    T* g = dlogits + n * V_local;
    if (targets[n] == ignore_index) {
      std::fill(g, g + V_local, T(0));
      continue;
    }
    const T* x = logits + n * V_local;
    for (i64 v = 0; v < valid; ++v)
      g[v] = static_cast<T>(s * (std::exp(static_cast<double>(x[v]) - logsumexp[n]) - smooth));
    std::fill(g + valid, g + V_local, T(0));  // padding columns
    const i64 t = static_cast<i64>(targets[n]) - first;
    if (t >= 0 && t < valid) g[t] = static_cast<T>(static_cast<double>(g[t]) - s * hit);
  }
}

#define TR_INSTANTIATE(T)                                                                         \
  template void embedding_forward_shard<T>(T*, const std::int32_t*, const T*, i64, i64, i64, i64, \
                                           T);                                                    \
  template void embedding_backward_shard_accumulate<T>(T*, const std::int32_t*, const T*, i64,    \
                                                       i64, i64, i64, T);                         \
  template void ce_shard_max<T>(double*, const T*, i64, i64, i64);                                \
  template void ce_shard_sums<T>(double*, const T*, const std::int32_t*, const double*, i64, i64, \
                                 i64, i64, std::int32_t);                                         \
  template void ce_shard_backward<T>(T*, const T*, const double*, const std::int32_t*, i64, i64,  \
                                     i64, i64, i64, T, std::int32_t, T);

TR_INSTANTIATE(float)
TR_INSTANTIATE(double)

#undef TR_INSTANTIATE

}  // namespace tr::cpu
