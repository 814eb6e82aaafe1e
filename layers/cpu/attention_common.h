// Helpers shared by the CPU attention kernels (attention.cpp, flash_attention.cpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace tr::cpu::attention_detail {

using i64 = std::int64_t;

// OpenBLAS (interface/gemm.c) keeps a GEMM single-threaded while M*N*K <= 65536 * 4: below it
// the (batch, head) pairs run in parallel, above it OpenBLAS threads each product.
constexpr double kBlasSingleThreadMnk = 65536.0 * 4.0;

// Keys visible to query row i: [0, limit).
inline i64 key_limit(i64 kv, i64 i, bool causal, i64 q_offset) {
  return causal ? std::max<i64>(0, std::min(kv, i + q_offset + 1)) : kv;
}

// One (batch, head) pair of projections [B, T, H*Dh]: its index b * H + h, the offsets of its
// query rows (q, out, dout, dq) and key rows (k, v, dk, dv), and the keys that exist (kv_len
// clamped to [0, Tk]; all Tk without kv_len).
struct HeadSlice {
  i64 bh, q, k, kv;
};

// body(slice) for every (batch, head) pair, the pairs split over the OpenMP threads when
// `parallel`.
template <typename Body>
void for_each_head(i64 B, i64 H, i64 Tq, i64 Tk, i64 Dh, const std::int32_t* kv_len, bool parallel,
                   Body&& body) {
  const i64 ld = H * Dh;
#pragma omp parallel for schedule(static) if (parallel)
  for (i64 bh = 0; bh < B * H; ++bh) {
    const i64 b = bh / H, h = bh % H;
    body(HeadSlice{bh, b * Tq * ld + h * Dh, b * Tk * ld + h * Dh,
                   kv_len ? std::clamp<i64>(kv_len[b], 0, Tk) : Tk});
  }
}

// Per-thread scratch, kept across calls so that a training step does not go back to the
// allocator once shapes have been seen.
template <typename T>
T* thread_buffer(i64 n) {
  thread_local std::vector<T> buf;
  if (static_cast<i64>(buf.size()) < n) buf.resize(static_cast<std::size_t>(n));
  return buf.data();
}

}  // namespace tr::cpu::attention_detail
