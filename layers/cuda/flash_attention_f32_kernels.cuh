// Flash attention in fp32 on the CUDA cores: the algorithm of the bf16 kernels
// (flash_attention_kernels.cuh) with fp32 storage and products, so that fp32 training keeps
// no [B, H, Tq, Tk] probabilities either. fp32 products are FMAs, not tensor-core fragments
// (TF32 would round the operands: fp32 runs are the GPU's exact reference), so the products are
// register-tiled as in an SGEMM.
//
// Work split: a block of 256 threads takes 64 rows of one (batch, head): 64 queries in the
// forward and the dq kernel, 64 keys in the dk/dv kernel. The other side streams through shared
// memory in tiles of 64. Thread (ty, tx) = (t / 16, t % 16) owns rows 4 ty .. 4 ty + 3 and the
// columns tx + 16 c of every product: a 4 x 4 block of each 64 x 64 score tile, a
// 4 x DHP / 16 block of each [64, DHP] output. A row's 16 threads are one half of a warp,
// so the softmax's row maximum and sum are shuffles within it, and a row's probabilities are
// shared through shared memory with a warp barrier only.
//
// Shared rows are padded to DHP + 4 floats (head tiles) and 68 floats (probability tiles): rows
// stay 16-byte aligned for float4 reads, and the 16 rows a half-warp reads at once fall into
// different banks.
//
// The device code is in a header so that tests compile it for the host under
// tests/common/cuda_emulation.h; the launches are in flash_attention.cu.
#pragma once

#include "layers/cuda/flash_attention_common.cuh"

namespace tr::cuda::flash {
namespace {

using ProblemF32 = ProblemOf<float>;

constexpr int kF32Threads = 256;
constexpr int kRowsPerThread = 4;                   // rows 4 ty .. 4 ty + 3
constexpr int kColumnThreads = 16;                  // threads along a row (half a warp)
constexpr int kScoreCols = kTile / kColumnThreads;  // score columns per thread

template <int DHP>
struct F32Strides {
  static constexpr int head = DHP + 4;
  static constexpr int probs = kTile + 4;
  static constexpr int head_elems = kTile * head;
  static constexpr int probs_elems = kTile * probs;
  static constexpr int out_cols = DHP / kColumnThreads;  // output columns per thread
};

// A head tile in this kernel's shared layout.
template <int DHP>
__device__ void load_f32_tile(float* tile, const float* base, int rows_valid, const ProblemF32& p) {
  load_head_tile<DHP, F32Strides<DHP>::head>(tile, base, rows_valid, p);
}

// s[a][c] = rows[4 ty + a] . other[tx + 16 c] over the DHP columns: this thread's block of a
// score tile (rows[64, DHP] other[64, DHP]^T).
template <int DHP>
__device__ void f32_scores(float (&s)[kRowsPerThread][kScoreCols], const float* rows,
                           const float* other, int ty, int tx) {
  constexpr int LD = F32Strides<DHP>::head;
  TR_UNROLL
  for (int a = 0; a < kRowsPerThread; ++a) {
    TR_UNROLL
    for (int c = 0; c < kScoreCols; ++c) s[a][c] = 0.0f;
  }
  TR_UNROLL_4
  for (int d = 0; d < DHP; d += 4) {
    float4 x[kRowsPerThread], y[kScoreCols];
    TR_UNROLL
    for (int a = 0; a < kRowsPerThread; ++a)
      x[a] = *reinterpret_cast<const float4*>(rows + (ty * kRowsPerThread + a) * LD + d);
    TR_UNROLL
    for (int c = 0; c < kScoreCols; ++c)
      y[c] = *reinterpret_cast<const float4*>(other + (tx + kColumnThreads * c) * LD + d);
    TR_UNROLL
    for (int a = 0; a < kRowsPerThread; ++a) {
      TR_UNROLL
      for (int c = 0; c < kScoreCols; ++c) {
        s[a][c] = fmaf(x[a].x, y[c].x, s[a][c]);
        s[a][c] = fmaf(x[a].y, y[c].y, s[a][c]);
        s[a][c] = fmaf(x[a].z, y[c].z, s[a][c]);
        s[a][c] = fmaf(x[a].w, y[c].w, s[a][c]);
      }
    }
  }
}

// acc[a][c] += probs[4 ty + a] . tile[:, tx + 16 c]: this thread's block of probs[64, 64]
// tile[64, DHP].
template <int DHP>
__device__ void f32_accumulate(float (&acc)[kRowsPerThread][F32Strides<DHP>::out_cols],
                               const float* probs, const float* tile, int ty, int tx) {
  using S = F32Strides<DHP>;
  TR_UNROLL_4
  for (int j = 0; j < kTile; j += 4) {
    float4 pr[kRowsPerThread];
    TR_UNROLL
    for (int a = 0; a < kRowsPerThread; ++a)
      pr[a] = *reinterpret_cast<const float4*>(probs + (ty * kRowsPerThread + a) * S::probs + j);
    const float* t = tile + j * S::head + tx;
    TR_UNROLL
    for (int c = 0; c < S::out_cols; ++c) {
      const float t0 = t[kColumnThreads * c], t1 = t[S::head + kColumnThreads * c],
                  t2 = t[2 * S::head + kColumnThreads * c],
                  t3 = t[3 * S::head + kColumnThreads * c];
      TR_UNROLL
      for (int a = 0; a < kRowsPerThread; ++a) {
        acc[a][c] = fmaf(pr[a].x, t0, acc[a][c]);
        acc[a][c] = fmaf(pr[a].y, t1, acc[a][c]);
        acc[a][c] = fmaf(pr[a].z, t2, acc[a][c]);
        acc[a][c] = fmaf(pr[a].w, t3, acc[a][c]);
      }
    }
  }
}

// Maximum and sum over a row's 16 threads (lanes 0-15 or 16-31 of the warp).
__device__ __forceinline__ float row_max(float x) {
  TR_UNROLL
  for (int o = kColumnThreads / 2; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
__device__ __forceinline__ float row_sum(float x) {
  TR_UNROLL
  for (int o = kColumnThreads / 2; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// This thread's block of a [rows, Dh] head slice (row 0 at `base`), rows below rows_valid,
// times `scale`.
template <int DHP>
__device__ void store_f32_block(float* base, const float (&acc)[kRowsPerThread][DHP / 16],
                                int rows_valid, float scale, const ProblemF32& p, int ty, int tx) {
  const i64 ld = p.ld();
  TR_UNROLL
  for (int a = 0; a < kRowsPerThread; ++a) {
    const int r = ty * kRowsPerThread + a;
    if (r >= rows_valid) continue;
    TR_UNROLL
    for (int c = 0; c < DHP / 16; ++c) {
      const int col = tx + kColumnThreads * c;
      if (col < p.Dh) base[r * ld + col] = acc[a][c] * scale;
    }
  }
}

// ---- forward ----------------------------------------------------------------------------------

template <int DHP>
constexpr std::size_t f32_forward_smem() {
  using S = F32Strides<DHP>;
  return sizeof(float) * (3 * S::head_elems + S::probs_elems);
}

template <int DHP>
__global__ void __launch_bounds__(kF32Threads)
    flash_forward_f32_kernel(float* out, float* lse, ProblemF32 p) {
  using S = F32Strides<DHP>;
  TR_DYNAMIC_SMEM(smem);
  float* qs = reinterpret_cast<float*>(smem);
  float* ks = qs + S::head_elems;
  float* vs = ks + S::head_elems;
  float* probs = vs + S::head_elems;

  const int ty = threadIdx.x / kColumnThreads, tx = threadIdx.x % kColumnThreads;
  const auto [bh, ld, q_base, k_base, kv] = block_head(p);
  const int i0 = blockIdx.y * kTile;
  const float *qb = p.q + q_base, *kb = p.k + k_base, *vb = p.v + k_base;
  const int kv_end = visible_keys(kv, min(i0 + kTile, p.Tq) - 1, p);  // any row of the block

  int limit[kRowsPerThread];
  const std::uint8_t* keep_row[kRowsPerThread];
  float m[kRowsPerThread], l[kRowsPerThread];  // running maximum (log2 domain) and sum
  float o[kRowsPerThread][S::out_cols];
  TR_UNROLL
  for (int a = 0; a < kRowsPerThread; ++a) {
    const int i = i0 + ty * kRowsPerThread + a;
    limit[a] = i < p.Tq ? visible_keys(kv, i, p) : 0;
    keep_row[a] = p.keep && i < p.Tq ? p.keep + (static_cast<i64>(bh) * p.Tq + i) * p.Tk : nullptr;
    m[a] = -INFINITY;
    l[a] = 0.0f;
    TR_UNROLL
    for (int c = 0; c < S::out_cols; ++c) o[a][c] = 0.0f;
  }

  load_f32_tile<DHP>(qs, qb + static_cast<i64>(i0) * ld, p.Tq - i0, p);
  for (int j0 = 0; j0 < kv_end; j0 += kTile) {
    __syncthreads();  // the previous tiles are read (and the query tile written)
    load_f32_tile<DHP>(ks, kb + static_cast<i64>(j0) * ld, p.Tk - j0, p);
    load_f32_tile<DHP>(vs, vb + static_cast<i64>(j0) * ld, p.Tk - j0, p);
    __syncthreads();
    float s[kRowsPerThread][kScoreCols];
    f32_scores<DHP>(s, qs, ks, ty, tx);
    TR_UNROLL
    for (int a = 0; a < kRowsPerThread; ++a) {
      float tile_max = -INFINITY;
      TR_UNROLL
      for (int c = 0; c < kScoreCols; ++c) {
        const int j = j0 + tx + kColumnThreads * c;
        s[a][c] = j < limit[a] ? s[a][c] * p.scale_log2 : -INFINITY;
        tile_max = fmaxf(tile_max, s[a][c]);
      }
      const float m_new = fmaxf(m[a], row_max(tile_max));
      // m_new = -inf: no visible key in this row yet (everything stays 0).
      const float alpha = m_new == -INFINITY ? 1.0f : exp2f(m[a] - m_new);
      float tile_sum = 0.0f;
      TR_UNROLL
      for (int c = 0; c < kScoreCols; ++c) {
        const int col = tx + kColumnThreads * c, j = j0 + col;
        float pv = s[a][c] == -INFINITY ? 0.0f : exp2f(s[a][c] - m_new);
        tile_sum += pv;
        if (keep_row[a] && j < limit[a]) pv *= keep_row[a][j] ? p.keep_scale : 0.0f;
        probs[(ty * kRowsPerThread + a) * S::probs + col] = pv;
      }
      l[a] = l[a] * alpha + row_sum(tile_sum);
      m[a] = m_new;
      TR_UNROLL
      for (int c = 0; c < S::out_cols; ++c) o[a][c] *= alpha;
    }
    __syncwarp();  // a row's probabilities are written by its half-warp
    f32_accumulate<DHP>(o, probs, vs, ty, tx);
  }

  TR_UNROLL
  for (int a = 0; a < kRowsPerThread; ++a) {
    const float inv = l[a] > 0.0f ? 1.0f / l[a] : 0.0f;
    TR_UNROLL
    for (int c = 0; c < S::out_cols; ++c) o[a][c] *= inv;
    const int i = i0 + ty * kRowsPerThread + a;
    // A row with no visible key: lse = +inf, so that the backward's exp(s - lse) is 0.
    if (tx == 0 && i < p.Tq)
      lse[static_cast<i64>(bh) * p.Tq + i] = l[a] > 0.0f ? (m[a] + log2f(l[a])) * kLn2 : INFINITY;
  }
  store_f32_block<DHP>(out + q_base + static_cast<i64>(i0) * ld, o, p.Tq - i0, 1.0f, p, ty, tx);
}

// ---- backward ---------------------------------------------------------------------------------

template <int DHP>
constexpr std::size_t f32_dkdv_smem() {
  using S = F32Strides<DHP>;
  return sizeof(float) * (4 * S::head_elems + S::probs_elems + 2 * kTile);
}

// dk, dv for 64 keys of one (batch, head), streaming the query tiles that see them:
// dv = sum_i dropped(P)^T dout, dk = scale sum_i dS^T q, dS = P (dP - rowdot), dP through the
// dropout mask. Scores are computed transposed ([keys, queries]) so that a thread's rows are
// keys.
template <int DHP>
__global__ void __launch_bounds__(kF32Threads)
    flash_dkdv_f32_kernel(float* dk, float* dv, const float* dout, const float* lse,
                          const float* rowdot, ProblemF32 p) {
  using S = F32Strides<DHP>;
  TR_DYNAMIC_SMEM(smem);
  float* ks = reinterpret_cast<float*>(smem);
  float* vs = ks + S::head_elems;
  float* qs = vs + S::head_elems;
  float* dos = qs + S::head_elems;
  // dropped(P)^T [keys, queries], then dS^T in the same place: one probability tile keeps the
  // largest instantiation within an A100's 163 KiB of shared memory.
  float* probs_t = dos + S::head_elems;
  float* lse_s = probs_t + S::probs_elems;
  float* rowdot_s = lse_s + kTile;

  const int ty = threadIdx.x / kColumnThreads, tx = threadIdx.x % kColumnThreads;
  const auto [bh, ld, q_base, k_base, kv] = block_head(p);
  const int j0 = blockIdx.y * kTile;

  float dk_acc[kRowsPerThread][S::out_cols], dv_acc[kRowsPerThread][S::out_cols];
  TR_UNROLL
  for (int a = 0; a < kRowsPerThread; ++a) {
    TR_UNROLL
    for (int c = 0; c < S::out_cols; ++c) dk_acc[a][c] = dv_acc[a][c] = 0.0f;
  }

  load_f32_tile<DHP>(ks, p.k + k_base + static_cast<i64>(j0) * ld, p.Tk - j0, p);
  load_f32_tile<DHP>(vs, p.v + k_base + static_cast<i64>(j0) * ld, p.Tk - j0, p);
  for (int i0 = first_query_tile(p, j0, kv); i0 < p.Tq; i0 += kTile) {
    __syncthreads();  // the previous query tiles are read (and the key tiles written)
    load_f32_tile<DHP>(qs, p.q + q_base + static_cast<i64>(i0) * ld, p.Tq - i0, p);
    load_f32_tile<DHP>(dos, dout + q_base + static_cast<i64>(i0) * ld, p.Tq - i0, p);
    load_row_stats(lse_s, rowdot_s, lse, rowdot, bh, i0, p);
    __syncthreads();
    float s_t[kRowsPerThread][kScoreCols], dp_t[kRowsPerThread][kScoreCols];
    f32_scores<DHP>(s_t, ks, qs, ty, tx);
    f32_scores<DHP>(dp_t, vs, dos, ty, tx);
    TR_UNROLL
    for (int a = 0; a < kRowsPerThread; ++a) {
      const int j = j0 + ty * kRowsPerThread + a;
      TR_UNROLL
      for (int c = 0; c < kScoreCols; ++c) {
        const int col = tx + kColumnThreads * c, i = i0 + col;
        const bool visible = i < p.Tq && j < kv && (!p.causal || j <= i + p.q_offset);
        const float pv = visible ? exp2f(s_t[a][c] * p.scale_log2 - lse_s[col] * kLog2e) : 0.0f;
        float keep = 1.0f;
        if (p.keep && visible)
          keep = p.keep[(static_cast<i64>(bh) * p.Tq + i) * p.Tk + j] ? p.keep_scale : 0.0f;
        probs_t[(ty * kRowsPerThread + a) * S::probs + col] = pv * keep;
        s_t[a][c] = pv * (dp_t[a][c] * keep - rowdot_s[col]);  // dS^T from here on
      }
    }
    __syncwarp();  // a row's values are written and read by its half-warp only
    f32_accumulate<DHP>(dv_acc, probs_t, dos, ty, tx);
    __syncwarp();
    TR_UNROLL
    for (int a = 0; a < kRowsPerThread; ++a) {
      TR_UNROLL
      for (int c = 0; c < kScoreCols; ++c)
        probs_t[(ty * kRowsPerThread + a) * S::probs + tx + kColumnThreads * c] = s_t[a][c];
    }
    __syncwarp();
    f32_accumulate<DHP>(dk_acc, probs_t, qs, ty, tx);
  }

  dv += k_base + static_cast<i64>(j0) * ld;
  dk += k_base + static_cast<i64>(j0) * ld;
  store_f32_block<DHP>(dv, dv_acc, p.Tk - j0, 1.0f, p, ty, tx);
  store_f32_block<DHP>(dk, dk_acc, p.Tk - j0, p.scale, p, ty, tx);
}

template <int DHP>
constexpr std::size_t f32_dq_smem() {
  using S = F32Strides<DHP>;
  return sizeof(float) * (4 * S::head_elems + S::probs_elems);
}

// dq for 64 queries of one (batch, head), streaming the key tiles they see:
// dq = scale sum_j dS k.
template <int DHP>
__global__ void __launch_bounds__(kF32Threads)
    flash_dq_f32_kernel(float* dq, const float* dout, const float* lse, const float* rowdot,
                        ProblemF32 p) {
  using S = F32Strides<DHP>;
  TR_DYNAMIC_SMEM(smem);
  float* qs = reinterpret_cast<float*>(smem);
  float* dos = qs + S::head_elems;
  float* ks = dos + S::head_elems;
  float* vs = ks + S::head_elems;
  float* ds = vs + S::head_elems;

  const int ty = threadIdx.x / kColumnThreads, tx = threadIdx.x % kColumnThreads;
  const auto [bh, ld, q_base, k_base, kv] = block_head(p);
  const int i0 = blockIdx.y * kTile;
  const int kv_end = visible_keys(kv, min(i0 + kTile, p.Tq) - 1, p);

  int limit[kRowsPerThread];
  float lse2[kRowsPerThread], dot[kRowsPerThread];
  const std::uint8_t* keep_row[kRowsPerThread];
  float dq_acc[kRowsPerThread][S::out_cols];
  TR_UNROLL
  for (int a = 0; a < kRowsPerThread; ++a) {
    const int i = i0 + ty * kRowsPerThread + a;
    const bool row = i < p.Tq;
    limit[a] = row ? visible_keys(kv, i, p) : 0;
    lse2[a] = row ? lse[static_cast<i64>(bh) * p.Tq + i] * kLog2e : INFINITY;
    dot[a] = row ? rowdot[static_cast<i64>(bh) * p.Tq + i] : 0.0f;
    keep_row[a] = p.keep && row ? p.keep + (static_cast<i64>(bh) * p.Tq + i) * p.Tk : nullptr;
    TR_UNROLL
    for (int c = 0; c < S::out_cols; ++c) dq_acc[a][c] = 0.0f;
  }

  load_f32_tile<DHP>(qs, p.q + q_base + static_cast<i64>(i0) * ld, p.Tq - i0, p);
  load_f32_tile<DHP>(dos, dout + q_base + static_cast<i64>(i0) * ld, p.Tq - i0, p);
  for (int j0 = 0; j0 < kv_end; j0 += kTile) {
    __syncthreads();
    load_f32_tile<DHP>(ks, p.k + k_base + static_cast<i64>(j0) * ld, p.Tk - j0, p);
    load_f32_tile<DHP>(vs, p.v + k_base + static_cast<i64>(j0) * ld, p.Tk - j0, p);
    __syncthreads();
    float s[kRowsPerThread][kScoreCols], dp[kRowsPerThread][kScoreCols];
    f32_scores<DHP>(s, qs, ks, ty, tx);
    f32_scores<DHP>(dp, dos, vs, ty, tx);
    TR_UNROLL
    for (int a = 0; a < kRowsPerThread; ++a) {
      TR_UNROLL
      for (int c = 0; c < kScoreCols; ++c) {
        const int col = tx + kColumnThreads * c, j = j0 + col;
        const bool visible = j < limit[a];
        const float pv = visible ? exp2f(s[a][c] * p.scale_log2 - lse2[a]) : 0.0f;
        const float keep = keep_row[a] && visible ? (keep_row[a][j] ? p.keep_scale : 0.0f) : 1.0f;
        ds[(ty * kRowsPerThread + a) * S::probs + col] = pv * (dp[a][c] * keep - dot[a]);
      }
    }
    __syncwarp();
    f32_accumulate<DHP>(dq_acc, ds, ks, ty, tx);
  }
  store_f32_block<DHP>(dq + q_base + static_cast<i64>(i0) * ld, dq_acc, p.Tq - i0, p.scale, p, ty,
                       tx);
}

}  // namespace
}  // namespace tr::cuda::flash
