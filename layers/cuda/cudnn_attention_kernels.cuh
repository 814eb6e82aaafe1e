// The small kernels around cuDNN's attention (cudnn_attention.cu): seq_len_q, the keep mask
// widened to bf16, the output scaled for the dropout backward, and the rows of sequences
// without keys. Device code and launch geometry in a
// header that also compiles for the host under tests/common/cuda_emulation.h
// (tests/layers/test_cudnn_attention_kernels_emulated.cpp).
#pragma once

#include <cmath>
#include <cstdint>

#include "layers/cuda/device_helpers.cuh"
#include "layers/cuda/kernels.h"
#include "layers/cuda/storage.cuh"

namespace tr::cuda::cudnn_side {
namespace {  // each translation unit (the CUDA build's, an emulated test's) has its own copy

constexpr int kThreads = 256;
constexpr int kMaskPerThread = 4;

inline unsigned blocks_for(i64 threads) {
  return static_cast<unsigned>((threads + kThreads - 1) / kThreads);
}

// out[i] = value for i < n (seq_len_q: Tq for every batch entry). blocks_for(n) blocks.
__global__ void fill_i32_kernel(std::int32_t* out, std::int32_t value, i64 n) {
  const i64 i = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = value;
}

// The u8 keep mask as bf16 1.0 / 0.0 (cuDNN's mask type), kMaskPerThread elements a thread:
// blocks_for((n + kMaskPerThread - 1) / kMaskPerThread) blocks. Four whole elements at aligned
// addresses (each thread tests its own: the keep mask is the caller's buffer) move as one 4-byte
// load and one 8-byte store, the bf16 ones' bits 0x3F80; the others one by one.
static_assert(kMaskPerThread == 4, "one 4-byte load, one 8-byte store");
__global__ void widen_keep_mask_kernel(bf16* out, const std::uint8_t* keep, i64 n) {
  const i64 first = kMaskPerThread * (blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x);
  if (first + 4 <= n && reinterpret_cast<std::uintptr_t>(keep + first) % 4 == 0 &&
      reinterpret_cast<std::uintptr_t>(out + first) % 8 == 0) {
    const std::uint32_t k = *reinterpret_cast<const std::uint32_t*>(keep + first);
    std::uint64_t bits = 0;  // little-endian: element `first` in the lowest 16 bits
    for (int j = 0; j < 4; ++j)
      if ((k >> (8 * j)) & 0xFFu) bits |= std::uint64_t{0x3F80} << (16 * j);
    *reinterpret_cast<std::uint64_t*>(out + first) = bits;
    return;
  }
  for (i64 i = first; i < first + kMaskPerThread && i < n; ++i)
    out[i] = keep[i] ? bf16{0x3F80} : bf16{0};
}

// out[i] = factor * in[i], rounded to bf16. blocks_for(n) blocks.
__global__ void scale_bf16_kernel(bf16* out, const bf16* in, float factor, i64 n) {
  const i64 i = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x;
  if (i < n) store(out, i, factor * load(in, i));
}

// Rows of a sequence without keys (kv_len[b] == 0): the own kernels' results, whatever cuDNN
// made of a row whose scores are all -inf: rows (out or dq, [B, Tq, H*Dh]) 0, lse ([B, H, Tq];
// may be null) +inf. One thread per (b, t, h) row: blocks_for(B * Tq * H) blocks.
__global__ void clear_keyless_rows_kernel(bf16* rows, float* lse, const std::int32_t* kv_len, i64 B,
                                          i64 H, i64 Tq, i64 Dh) {
  const i64 r = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x;
  if (r >= B * Tq * H) return;
  const i64 b = r / (Tq * H), t = r / H % Tq, h = r % H;
  if (kv_len[b] != 0) return;
  for (i64 c = 0; c < Dh; ++c) rows[r * Dh + c] = 0;
  if (lse) lse[(b * H + h) * Tq + t] = INFINITY;
}

}  // namespace
}  // namespace tr::cuda::cudnn_side
