// What the flash attention kernels of both precisions share: the problem a call describes,
// the launch grids, the masks, and the row dot product of the backward. The bf16 kernels
// (tensor cores) are in flash_attention_kernels.cuh, the fp32 ones (CUDA cores) in
// flash_attention_f32_kernels.cuh; the CPU twin (layers/cpu/flash_attention.cpp) defines the
// results of both.
//
// Masks: key padding (kv_len), causal (key j visible to query i when j <= i + q_offset),
// dropout (the u8 keep mask of attention_forward, applied to the probabilities that multiply v;
// the softmax sum is over the undropped ones, as on the CPU).
//
// Device code in headers so that tests can also compile it for the host under
// tests/common/cuda_emulation.h, which runs these exact kernels on the CPU in CI.
#pragma once

#ifndef TR_CUDA_EMULATION
#include <cuda_bf16.h>
#define TR_DYNAMIC_SMEM(name) extern __shared__ __align__(128) unsigned char name[]
#endif

#include <cmath>
#include <cstdint>

#include "layers/cuda/device_helpers.cuh"
#include "layers/cuda/kernels.h"

// An anonymous namespace: each translation unit (the CUDA build's, an emulated test's) has its
// own copy, so the two builds of these functions never meet at link time.
namespace tr::cuda::flash {
namespace {

using bfloat = __nv_bfloat16;

constexpr int kTile = 64;  // rows of a block, and of each streamed tile of the other side
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Sizes, pointers and masks shared by the kernels (passed by value); E is the storage type of
// q, k, v and the outputs (bfloat or float).
template <typename E>
struct ProblemOf {
  const E *q, *k, *v;
  const std::int32_t* kv_len;  // null: every key exists
  const std::uint8_t* keep;    // null: no dropout
  float keep_scale;
  int B, H, Tq, Tk, Dh;
  bool causal;
  int q_offset;
  float scale;       // 1 / sqrt(Dh)
  float scale_log2;  // scale * log2(e): the softmax runs on exp2
  bool vec;          // rows load as 16-byte vectors (the launcher checks widths and alignment)
  __host__ __device__ i64 ld() const { return static_cast<i64>(H) * Dh; }
};

template <typename E>
ProblemOf<E> fill_problem(const E* q, const E* k, const E* v, const std::int32_t* kv_len,
                          const std::uint8_t* keep_mask, float keep_scale, i64 B, i64 H, i64 Tq,
                          i64 Tk, i64 Dh, bool causal, i64 q_offset, bool vec) {
  ProblemOf<E> p;
  p.q = q;
  p.k = k;
  p.v = v;
  p.kv_len = kv_len;
  p.keep = keep_mask;
  p.keep_scale = keep_scale;
  p.B = static_cast<int>(B);
  p.H = static_cast<int>(H);
  p.Tq = static_cast<int>(Tq);
  p.Tk = static_cast<int>(Tk);
  p.Dh = static_cast<int>(Dh);
  p.causal = causal;
  p.q_offset = static_cast<int>(q_offset);
  p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(Dh)));
  p.scale_log2 = p.scale * kLog2e;
  p.vec = vec;
  return p;
}

// A call's problem. `vec`: rows may load as 16-byte vectors (the launcher checks the head
// width and the pointers' alignment).
inline ProblemOf<bfloat> make_problem(const bf16* q, const bf16* k, const bf16* v,
                                      const std::int32_t* kv_len, const std::uint8_t* keep_mask,
                                      float keep_scale, i64 B, i64 H, i64 Tq, i64 Tk, i64 Dh,
                                      bool causal, i64 q_offset, bool vec) {
  return fill_problem(reinterpret_cast<const bfloat*>(q), reinterpret_cast<const bfloat*>(k),
                      reinterpret_cast<const bfloat*>(v), kv_len, keep_mask, keep_scale, B, H, Tq,
                      Tk, Dh, causal, q_offset, vec);
}
inline ProblemOf<float> make_problem(const float* q, const float* k, const float* v,
                                     const std::int32_t* kv_len, const std::uint8_t* keep_mask,
                                     float keep_scale, i64 B, i64 H, i64 Tq, i64 Tk, i64 Dh,
                                     bool causal, i64 q_offset, bool vec) {
  return fill_problem(q, k, v, kv_len, keep_mask, keep_scale, B, H, Tq, Tk, Dh, causal, q_offset,
                      vec);
}

// What the bf16 kernels of both families share (flash_attention_kernels.cuh: WMMA;
// flash_attention_mma_kernels.cuh: mma.sync): their problem and their block of 4 warps.
using Problem = ProblemOf<bfloat>;
constexpr int kFlashThreads = 4 * 32;

// Launch grids: x = (batch, head) pairs, y = 64-row tiles of the block's own side (queries for
// the forward and dq, keys for dk/dv).
struct Grid {
  unsigned x, y;
};
template <typename E>
Grid query_grid(const ProblemOf<E>& p) {
  return {static_cast<unsigned>(p.B * p.H), static_cast<unsigned>((p.Tq + kTile - 1) / kTile)};
}
template <typename E>
Grid key_grid(const ProblemOf<E>& p) {
  return {static_cast<unsigned>(p.B * p.H), static_cast<unsigned>((p.Tk + kTile - 1) / kTile)};
}

// The padded head width of a kernel instantiation: 16, 32, 64 or 128 (zero columns add
// nothing to any product).
inline int padded_head_dim(i64 Dh) {
  return Dh <= 16 ? 16 : Dh <= 32 ? 32 : Dh <= 64 ? 64 : 128;
}

// Keys that query i sees among the kv existing ones.
template <typename E>
__device__ __forceinline__ int visible_keys(int kv, int i, const ProblemOf<E>& p) {
  return p.causal ? max(0, min(kv, i + p.q_offset + 1)) : kv;
}

// Keys that exist in sequence b (kv_len clamped to [0, Tk]).
template <typename E>
__device__ __forceinline__ int keys_of(const ProblemOf<E>& p, int b) {
  return p.kv_len ? min(max(p.kv_len[b], 0), p.Tk) : p.Tk;
}

// The (batch, head) pair of a block (blockIdx.x) and where its rows start: those of q, out,
// dout and dq at q_base + i * ld, those of k, v, dk and dv at k_base + j * ld; kv keys exist.
struct BlockHead {
  int bh;
  i64 ld, q_base, k_base;
  int kv;
};
template <typename E>
__device__ __forceinline__ BlockHead block_head(const ProblemOf<E>& p) {
  const int bh = blockIdx.x, b = bh / p.H, h = bh % p.H;
  const i64 ld = p.ld(), head = static_cast<i64>(h) * p.Dh;
  return {bh, ld, static_cast<i64>(b) * p.Tq * ld + head, static_cast<i64>(b) * p.Tk * ld + head,
          keys_of(p, b)};
}

// The first query tile that can see a key of the tile starting at j0 (kv keys exist): 0, or
// under the causal mask the tile holding the first query with i + q_offset >= j0; Tq (none)
// when no key of the tile exists.
template <typename E>
__device__ __forceinline__ int first_query_tile(const ProblemOf<E>& p, int j0, int kv) {
  if (j0 >= kv) return p.Tq;
  return p.causal ? (max(0, j0 - p.q_offset) / kTile) * kTile : 0;
}

// The dk/dv kernels' per-query statistics of the query tile at i0 into shared memory: lse
// (+inf past Tq: no probability) and rowdot (0 past Tq).
template <typename E>
__device__ void load_row_stats(float* lse_s, float* rowdot_s, const float* lse, const float* rowdot,
                               int bh, int i0, const ProblemOf<E>& p) {
  for (int t = threadIdx.x; t < kTile; t += blockDim.x) {
    const bool row = i0 + t < p.Tq;
    lse_s[t] = row ? lse[static_cast<i64>(bh) * p.Tq + i0 + t] : INFINITY;
    rowdot_s[t] = row ? rowdot[static_cast<i64>(bh) * p.Tq + i0 + t] : 0.0f;
  }
}

// The dropout keep mask's tile [64 queries from i0][64 keys from j0] in shared memory (0 outside
// the mask), loaded with consecutive lanes on consecutive keys. The kernels then read it in
// their own orders (a lane pair per query row, or per key in dk/dv) from shared memory instead
// of scattered byte loads from global memory (one row per lane pair: up to 16 rows per load).
constexpr int kKeepStride = kTile + 4;  // bytes per row: a column's reads spread over the banks
constexpr int kKeepBytes = kTile * kKeepStride;
// Four keys a thread: one 4-byte load and store where the mask's rows keep 4-byte alignment
// (Tk a multiple of 4, an aligned mask and tile), else byte by byte.
static_assert(kKeepStride % 4 == 0 && kTile % 4 == 0, "keep tile rows of whole words");
__device__ void load_keep_tile(std::uint8_t* tile, int i0, int j0, int bh, const Problem& p) {
  const bool tile_words = reinterpret_cast<std::uintptr_t>(tile) % 4 == 0;
  const bool words =
      tile_words && p.Tk % 4 == 0 && reinterpret_cast<std::uintptr_t>(p.keep) % 4 == 0;
  constexpr int kWordsPerRow = kTile / 4;
  for (int idx = threadIdx.x; idx < kTile * kWordsPerRow; idx += blockDim.x) {
    const int ii = idx / kWordsPerRow, jj = (idx % kWordsPerRow) * 4, i = i0 + ii, j = j0 + jj;
    std::uint8_t* out = tile + ii * kKeepStride + jj;
    // The mask's row from key j, or none (a query or key past the mask's end: zeros).
    const std::uint8_t* in =
        i < p.Tq && j < p.Tk ? p.keep + (static_cast<i64>(bh) * p.Tq + i) * p.Tk + j : nullptr;
    if (words || (!in && tile_words)) {  // j and Tk multiples of 4: a word inside the row
      *reinterpret_cast<std::uint32_t*>(out) =
          in ? *reinterpret_cast<const std::uint32_t*>(in) : 0u;
      continue;
    }
    for (int e = 0; e < 4; ++e) out[e] = in && j + e < p.Tk ? in[e] : 0;
  }
}

// Rows [0, kTile) of a head slice (row 0 at `base`, row stride p.ld()) into a shared tile of
// row stride LD; rows >= rows_valid and columns >= Dh are zero. With p.vec, 16-byte moves.
template <int DHP, int LD, typename E>
__device__ void load_head_tile(E* tile, const E* base, int rows_valid, const ProblemOf<E>& p) {
  const i64 ld = p.ld();
  if (p.vec) {
    constexpr int per_vector = 16 / sizeof(E), chunks = DHP / per_vector;
    for (int idx = threadIdx.x; idx < kTile * chunks; idx += blockDim.x) {
      const int r = idx / chunks, c = (idx % chunks) * per_vector;
      uint4 val = make_uint4(0, 0, 0, 0);
      if (r < rows_valid && c < p.Dh) val = *reinterpret_cast<const uint4*>(base + r * ld + c);
      *reinterpret_cast<uint4*>(tile + r * LD + c) = val;
    }
  } else {
    for (int idx = threadIdx.x; idx < kTile * DHP; idx += blockDim.x) {
      const int r = idx / DHP, c = idx % DHP;
      tile[r * LD + c] = r < rows_valid && c < p.Dh ? base[r * ld + c] : E{};
    }
  }
}

__device__ __forceinline__ float widen(float x) {
  return x;
}
__device__ __forceinline__ float widen(bfloat x) {
  return __bfloat162float(x);
}

// rowdot[bh, i] = sum_c dout[b, i, h, c] * out[b, i, h, c] (FlashAttention-2's D: the rows'
// sum of dP * P, from the output): one warp per row.
template <typename E>
__global__ void row_dot_kernel(float* rowdot, const E* dout, const E* out, ProblemOf<E> p) {
  const i64 rows = static_cast<i64>(p.B) * p.H * p.Tq;
  const int lane = threadIdx.x % 32;
  const i64 warps = static_cast<i64>(gridDim.x) * (blockDim.x / 32);
  for (i64 row = blockIdx.x * static_cast<i64>(blockDim.x / 32) + threadIdx.x / 32; row < rows;
       row += warps) {
    const i64 bh = row / p.Tq, i = row % p.Tq;
    const i64 b = bh / p.H, h = bh % p.H;
    const i64 base = (b * p.Tq + i) * p.ld() + h * p.Dh;
    float sum = 0.0f;
    for (int c = lane; c < p.Dh; c += 32) sum += widen(dout[base + c]) * widen(out[base + c]);
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (lane == 0) rowdot[row] = sum;
  }
}

}  // namespace
}  // namespace tr::cuda::flash
