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

// Per-thread scratch, kept across calls so that a training step does not go back to the
// allocator once shapes have been seen.
template <typename T>
T* thread_buffer(i64 n) {
  thread_local std::vector<T> buf;
  if (static_cast<i64>(buf.size()) < n) buf.resize(static_cast<std::size_t>(n));
  return buf.data();
}

}  // namespace tr::cpu::attention_detail
