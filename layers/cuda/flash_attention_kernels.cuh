// Flash attention on CUDA (FlashAttention-2's algorithm): bf16 q/k/v read in place from the
// projections [B, T, H*Dh], scores and probabilities kept in shared memory, never in global
// memory. The CPU twin (layers/cpu/flash_attention.cpp) defines the results.
//
// Work split: a block of 4 warps takes 64 rows of one (batch, head): 64 queries in the forward
// and the dq kernel, 64 keys in the dk/dv kernel; each warp owns 16 of them. The other side
// streams through shared memory in tiles of 64. Products run on the tensor cores through WMMA
// (16 x 16 x 16 bf16 fragments, fp32 accumulation). WMMA's accumulator layout is opaque, so a
// warp stores each score tile to its own shared scratch, and each lane pair then owns one row
// (32 columns each) for the softmax: the online maximum and sum, and in the forward the
// running output row in registers, rescaled as the maximum grows.
//
// Head widths up to 128 (padded to 16, 32, 64 or 128). Masks, grids and the backward's row
// dot product: flash_attention_common.cuh.
//
// The device code: kernels and their helpers, in a header so that tests can also compile it
// for the host under tests/common/cuda_emulation.h (threads for lanes, barriers for the
// syncs, a plain-C++ WMMA), which runs these exact kernels on the CPU in CI. The launches are
// in flash_attention.cu.
#pragma once

#ifndef TR_CUDA_EMULATION
#include <mma.h>
#endif

#include "layers/cuda/flash_attention_common.cuh"

namespace tr::cuda::flash {
namespace {

using namespace nvcuda;

constexpr int kWarps = kFlashThreads / 32;  // each owns 16 of the block's rows
constexpr int kSkew = 8;          // bf16 padding per shared row: keeps WMMA's 32-byte alignment,
                                  // spreads the rows over the banks
constexpr int kHalf = kTile / 2;  // columns of a score row per lane

using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, bfloat, wmma::row_major>;
using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 16, bfloat, wmma::row_major>;
using FragBt = wmma::fragment<wmma::matrix_b, 16, 16, 16, bfloat, wmma::col_major>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

// Shared-memory row strides: bf16 tiles of head rows, per-warp fp32 scratch (a score tile or
// an output tile), per-warp bf16 probability tiles.
template <int DHP>
struct Strides {
  static constexpr int tile = DHP + kSkew;
  static constexpr int scratch = (DHP > kTile ? DHP : kTile) + 4;
  static constexpr int probs = kTile + kSkew;
  static constexpr int tile_elems = kTile * tile;
  static constexpr int scratch_elems = 16 * scratch;
  static constexpr int probs_elems = 16 * probs;
};

// A head tile in this kernel's shared layout.
template <int DHP>
__device__ void load_tile(bfloat* tile, const bfloat* base, int rows_valid, const Problem& p) {
  load_head_tile<DHP, Strides<DHP>::tile>(tile, base, rows_valid, p);
}

// A warp's 16 rows [16, DHP] of a shared tile as the A fragments of its products: loaded once
// where the rows stay for the whole kernel (the queries of the forward and dq, the keys and
// values of dk/dv), instead of once per product and column block.
template <int DHP>
struct RowFragments {
  FragA a[DHP / 16];
  __device__ void load(const bfloat* rows) {
    TR_UNROLL
    for (int kk = 0; kk < DHP / 16; ++kk)
      wmma::load_matrix_sync(a[kk], rows + kk * 16, Strides<DHP>::tile);
  }
};

// scratch[16, 64] = rows[16, DHP] other[64, DHP]^T: a warp's scores against a tile.
template <int DHP>
__device__ void scores_tile(float* scratch, const RowFragments<DHP>& rows, const bfloat* other) {
  constexpr int LD = Strides<DHP>::tile;
  TR_UNROLL
  for (int n = 0; n < kTile / 16; ++n) {
    FragC acc;
    wmma::fill_fragment(acc, 0.0f);
    TR_UNROLL
    for (int kk = 0; kk < DHP / 16; ++kk) {
      FragBt bt;
      wmma::load_matrix_sync(bt, other + n * 16 * LD + kk * 16, LD);
      wmma::mma_sync(acc, rows.a[kk], bt, acc);
    }
    wmma::store_matrix_sync(scratch + n * 16, acc, Strides<DHP>::scratch, wmma::mem_row_major);
  }
}

// acc[n] (+)= probs[16, 64] tile[64, DHP] for the DHP / 16 column blocks n; the probability
// fragments are loaded once for all n.
template <int DHP>
__device__ void accumulate_product(FragC* acc, const bfloat* probs, const bfloat* tile) {
  constexpr int LD = Strides<DHP>::tile;
  FragA a[kTile / 16];
  TR_UNROLL
  for (int kk = 0; kk < kTile / 16; ++kk)
    wmma::load_matrix_sync(a[kk], probs + kk * 16, Strides<DHP>::probs);
  TR_UNROLL
  for (int n = 0; n < DHP / 16; ++n) {
    TR_UNROLL
    for (int kk = 0; kk < kTile / 16; ++kk) {
      FragB bm;
      wmma::load_matrix_sync(bm, tile + kk * 16 * LD + n * 16, LD);
      wmma::mma_sync(acc[n], a[kk], bm, acc[n]);
    }
  }
}

// The column a lane takes at step c of its loop over `count` (a power of two) columns: rotated
// by its row, and by half the count for the second lane of a pair, so that at every step the
// 32 lanes read 32 different banks of the fp32 scratch (its row stride is 4 mod 32 words).
__device__ __forceinline__ int rotated(int c, int count, int lane) {
  return (c + (lane >> 1) + (lane & 1) * (count / 2)) & (count - 1);
}

// A warp's 16 rows of a [rows, Dh] head slice from the fp32 scratch (scaled), rows below
// rows_valid: coalesced stores, the lanes along a row.
template <int DHP>
__device__ void store_rows(bfloat* base, const float* scratch, int rows_valid, float scale,
                           const Problem& p, int lane) {
  const i64 ld = p.ld();
  for (int idx = lane; idx < 16 * p.Dh; idx += 32) {
    const int r = idx / p.Dh, c = idx % p.Dh;
    if (r < rows_valid)
      base[r * ld + c] = __float2bfloat16_rn(scratch[r * Strides<DHP>::scratch + c] * scale);
  }
}

// A warp's fragments [16, DHP] through its scratch to global rows.
template <int DHP>
__device__ void store_fragments(bfloat* base, FragC* acc, float* scratch, int rows_valid,
                                float scale, const Problem& p, int lane) {
  __syncwarp();  // the lanes are done reading the scratch
  TR_UNROLL
  for (int n = 0; n < DHP / 16; ++n)
    wmma::store_matrix_sync(scratch + n * 16, acc[n], Strides<DHP>::scratch, wmma::mem_row_major);
  __syncwarp();
  store_rows<DHP>(base, scratch, rows_valid, scale, p, lane);
}

// ---- forward ----------------------------------------------------------------------------------

template <int DHP>
constexpr std::size_t forward_smem() {
  using S = Strides<DHP>;
  return sizeof(bfloat) * (3 * S::tile_elems + kWarps * S::probs_elems) +
         sizeof(float) * kWarps * S::scratch_elems + kKeepBytes;
}

template <int DHP>
__global__ void __launch_bounds__(kFlashThreads)
    flash_forward_kernel(bfloat* out, float* lse, Problem p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();  // bf16 tensor cores: sm_80 and later (the host side refuses older devices)
#else
  using S = Strides<DHP>;
  TR_DYNAMIC_SMEM(smem);
  bfloat* qs = reinterpret_cast<bfloat*>(smem);
  bfloat* ks = qs + S::tile_elems;
  bfloat* vs = ks + S::tile_elems;
  float* scratch_all = reinterpret_cast<float*>(vs + S::tile_elems);
  bfloat* probs_all = reinterpret_cast<bfloat*>(scratch_all + kWarps * S::scratch_elems);
  std::uint8_t* keep_s = reinterpret_cast<std::uint8_t*>(probs_all + kWarps * S::probs_elems);

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const auto [bh, ld, q_base, k_base, kv] = block_head(p);
  const int i0 = blockIdx.y * kTile;
  const bfloat *qb = p.q + q_base, *kb = p.k + k_base, *vb = p.v + k_base;
  const int kv_end = visible_keys(kv, min(i0 + kTile, p.Tq) - 1, p);  // any row of the block

  float* scratch = scratch_all + warp * S::scratch_elems;
  bfloat* probs = probs_all + warp * S::probs_elems;
  const int r = lane >> 1, c0 = (lane & 1) * kHalf;
  const int i = i0 + warp * 16 + r;  // this lane pair's query
  const int limit = i < p.Tq ? visible_keys(kv, i, p) : 0;
  const std::uint8_t* keep_row = keep_s + (warp * 16 + r) * kKeepStride;  // with dropout

  constexpr int kOutCols = DHP / 2;  // output columns per lane: half of the row
  float o[kOutCols];
  TR_UNROLL
  for (int c = 0; c < kOutCols; ++c) o[c] = 0.0f;
  float m = -INFINITY, l = 0.0f;  // running maximum (log2 domain) and sum of this row

  load_tile<DHP>(qs, qb + static_cast<i64>(i0) * ld, p.Tq - i0, p);
  __syncthreads();
  RowFragments<DHP> q_rows;
  q_rows.load(qs + warp * 16 * S::tile);
  for (int j0 = 0; j0 < kv_end; j0 += kTile) {
    __syncthreads();  // the previous tiles are read
    load_tile<DHP>(ks, kb + static_cast<i64>(j0) * ld, p.Tk - j0, p);
    load_tile<DHP>(vs, vb + static_cast<i64>(j0) * ld, p.Tk - j0, p);
    if (p.keep) load_keep_tile(keep_s, i0, j0, bh, p);
    __syncthreads();
    scores_tile<DHP>(scratch, q_rows, ks);
    __syncwarp();

    // Online softmax over this lane's 32 columns, combined with the partner lane's.
    float s[kHalf];
    float tile_max = -INFINITY;
    TR_UNROLL
    for (int c = 0; c < kHalf; ++c) {  // s[c] holds column c0 + rotated(c)
      const int col = c0 + rotated(c, kHalf, lane), j = j0 + col;
      s[c] = j < limit ? scratch[r * S::scratch + col] * p.scale_log2 : -INFINITY;
      tile_max = fmaxf(tile_max, s[c]);
    }
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
    const float m_new = fmaxf(m, tile_max);
    // m_new = -inf: no visible key in this row yet (everything stays 0).
    const float alpha = m_new == -INFINITY ? 1.0f : exp2f(m - m_new);
    float tile_sum = 0.0f;
    TR_UNROLL
    for (int c = 0; c < kHalf; ++c) {
      const int col = c0 + rotated(c, kHalf, lane), j = j0 + col;
      float pv = s[c] == -INFINITY ? 0.0f : exp2f(s[c] - m_new);
      tile_sum += pv;
      if (p.keep && j < limit) pv *= keep_row[col] ? p.keep_scale : 0.0f;
      probs[r * S::probs + col] = __float2bfloat16_rn(pv);
    }
    tile_sum += __shfl_xor_sync(0xffffffffu, tile_sum, 1);
    l = l * alpha + tile_sum;
    m = m_new;
    TR_UNROLL
    for (int c = 0; c < kOutCols; ++c) o[c] *= alpha;
    __syncwarp();

    // This tile's P V into the scratch (the scores are consumed), added to the running rows.
    FragC acc[DHP / 16];
    TR_UNROLL
    for (int n = 0; n < DHP / 16; ++n) wmma::fill_fragment(acc[n], 0.0f);
    accumulate_product<DHP>(acc, probs, vs);
    TR_UNROLL
    for (int n = 0; n < DHP / 16; ++n)
      wmma::store_matrix_sync(scratch + n * 16, acc[n], S::scratch, wmma::mem_row_major);
    __syncwarp();
    TR_UNROLL
    for (int c = 0; c < kOutCols; ++c)  // o[c] holds column (lane & 1) * kOutCols + rotated(c)
      o[c] += scratch[r * S::scratch + (lane & 1) * kOutCols + rotated(c, kOutCols, lane)];
  }

  // Normalised rows through the scratch to coalesced global stores.
  __syncwarp();
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
  TR_UNROLL
  for (int c = 0; c < kOutCols; ++c)
    scratch[r * S::scratch + (lane & 1) * kOutCols + rotated(c, kOutCols, lane)] = o[c] * inv;
  __syncwarp();
  const int row0 = i0 + warp * 16;
  store_rows<DHP>(out + q_base + static_cast<i64>(row0) * ld, scratch, p.Tq - row0, 1.0f, p, lane);
  // A row with no visible key: lse = +inf, so that the backward's exp(s - lse) is 0.
  if ((lane & 1) == 0 && i < p.Tq)
    lse[static_cast<i64>(bh) * p.Tq + i] = l > 0.0f ? (m + log2f(l)) * kLn2 : INFINITY;
#endif
}

// ---- backward ---------------------------------------------------------------------------------

template <int DHP>
constexpr std::size_t backward_smem() {
  using S = Strides<DHP>;
  return sizeof(bfloat) * (4 * S::tile_elems + 2 * kWarps * S::probs_elems) +
         sizeof(float) * (2 * kWarps * S::scratch_elems + 2 * kTile) + kKeepBytes;
}

// dk, dv for 64 keys of one (batch, head), streaming the query tiles that see them:
// dv = sum_i dropped(P)^T dout, dk = scale sum_i dS^T q, dS = P (dP - rowdot), dP through the
// dropout mask. Scores are computed transposed ([keys, queries]) so that each warp's rows are
// its keys.
template <int DHP>
__global__ void __launch_bounds__(kFlashThreads)
    flash_dkdv_kernel(bfloat* dk, bfloat* dv, const bfloat* dout, const float* lse,
                      const float* rowdot, Problem p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();
#else
  using S = Strides<DHP>;
  TR_DYNAMIC_SMEM(smem);
  bfloat* ks = reinterpret_cast<bfloat*>(smem);
  bfloat* vs = ks + S::tile_elems;
  bfloat* qs = vs + S::tile_elems;
  bfloat* dos = qs + S::tile_elems;
  float* scratch_all = reinterpret_cast<float*>(dos + S::tile_elems);
  bfloat* probs_all = reinterpret_cast<bfloat*>(scratch_all + 2 * kWarps * S::scratch_elems);
  float* lse_s = reinterpret_cast<float*>(probs_all + 2 * kWarps * S::probs_elems);
  float* rowdot_s = lse_s + kTile;
  std::uint8_t* keep_s = reinterpret_cast<std::uint8_t*>(rowdot_s + kTile);

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const auto [bh, ld, q_base, k_base, kv] = block_head(p);
  const int j0 = blockIdx.y * kTile;

  float* s_t = scratch_all + warp * 2 * S::scratch_elems;  // scores, transposed
  float* dp_t = s_t + S::scratch_elems;                    // dP, transposed
  bfloat* pd_t = probs_all + warp * 2 * S::probs_elems;    // dropped(P)^T, bf16
  bfloat* ds_t = pd_t + S::probs_elems;                    // dS^T, bf16
  const int r = lane >> 1, c0 = (lane & 1) * kHalf;
  const int j = j0 + warp * 16 + r;  // this lane pair's key

  FragC dk_acc[DHP / 16], dv_acc[DHP / 16];
  TR_UNROLL
  for (int n = 0; n < DHP / 16; ++n) {
    wmma::fill_fragment(dk_acc[n], 0.0f);
    wmma::fill_fragment(dv_acc[n], 0.0f);
  }

  load_tile<DHP>(ks, p.k + k_base + static_cast<i64>(j0) * ld, p.Tk - j0, p);
  load_tile<DHP>(vs, p.v + k_base + static_cast<i64>(j0) * ld, p.Tk - j0, p);
  __syncthreads();
  RowFragments<DHP> k_rows, v_rows;
  k_rows.load(ks + warp * 16 * S::tile);
  v_rows.load(vs + warp * 16 * S::tile);
  for (int i0 = first_query_tile(p, j0, kv); i0 < p.Tq; i0 += kTile) {
    __syncthreads();  // the previous query tiles are read
    load_tile<DHP>(qs, p.q + q_base + static_cast<i64>(i0) * ld, p.Tq - i0, p);
    load_tile<DHP>(dos, dout + q_base + static_cast<i64>(i0) * ld, p.Tq - i0, p);
    load_row_stats(lse_s, rowdot_s, lse, rowdot, bh, i0, p);
    if (p.keep) load_keep_tile(keep_s, i0, j0, bh, p);
    __syncthreads();
    scores_tile<DHP>(s_t, k_rows, qs);
    scores_tile<DHP>(dp_t, v_rows, dos);
    __syncwarp();
    TR_UNROLL_4
    for (int c = 0; c < kHalf; ++c) {
      const int col = c0 + rotated(c, kHalf, lane), i = i0 + col;
      const bool visible = i < p.Tq && j < kv && (!p.causal || j <= i + p.q_offset);
      const float pv =
          visible ? exp2f(s_t[r * S::scratch + col] * p.scale_log2 - lse_s[col] * kLog2e) : 0.0f;
      float keep = 1.0f;
      if (p.keep && visible) keep = keep_s[col * kKeepStride + warp * 16 + r] ? p.keep_scale : 0.0f;
      pd_t[r * S::probs + col] = __float2bfloat16_rn(pv * keep);
      ds_t[r * S::probs + col] =
          __float2bfloat16_rn(pv * (dp_t[r * S::scratch + col] * keep - rowdot_s[col]));
    }
    __syncwarp();
    accumulate_product<DHP>(dv_acc, pd_t, dos);
    accumulate_product<DHP>(dk_acc, ds_t, qs);
  }

  const int row0 = j0 + warp * 16;
  bfloat* dv_rows = dv + k_base + static_cast<i64>(row0) * ld;
  bfloat* dk_rows = dk + k_base + static_cast<i64>(row0) * ld;
  store_fragments<DHP>(dv_rows, dv_acc, s_t, p.Tk - row0, 1.0f, p, lane);
  store_fragments<DHP>(dk_rows, dk_acc, s_t, p.Tk - row0, p.scale, p, lane);
#endif
}

// dq for 64 queries of one (batch, head), streaming the key tiles they see:
// dq = scale sum_j dS k.
template <int DHP>
__global__ void __launch_bounds__(kFlashThreads)
    flash_dq_kernel(bfloat* dq, const bfloat* dout, const float* lse, const float* rowdot,
                    Problem p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();
#else
  using S = Strides<DHP>;
  TR_DYNAMIC_SMEM(smem);
  bfloat* qs = reinterpret_cast<bfloat*>(smem);
  bfloat* dos = qs + S::tile_elems;
  bfloat* ks = dos + S::tile_elems;
  bfloat* vs = ks + S::tile_elems;
  float* scratch_all = reinterpret_cast<float*>(vs + S::tile_elems);
  bfloat* probs_all = reinterpret_cast<bfloat*>(scratch_all + 2 * kWarps * S::scratch_elems);
  // After the space dk/dv keeps for its row statistics: both kernels have backward_smem.
  std::uint8_t* keep_s = reinterpret_cast<std::uint8_t*>(probs_all + 2 * kWarps * S::probs_elems) +
                         2 * kTile * sizeof(float);

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const auto [bh, ld, q_base, k_base, kv] = block_head(p);
  const int i0 = blockIdx.y * kTile;
  const int kv_end = visible_keys(kv, min(i0 + kTile, p.Tq) - 1, p);

  float* s = scratch_all + warp * 2 * S::scratch_elems;
  float* dp = s + S::scratch_elems;
  bfloat* ds = probs_all + warp * 2 * S::probs_elems;
  const int r = lane >> 1, c0 = (lane & 1) * kHalf;
  const int i = i0 + warp * 16 + r;
  const bool row = i < p.Tq;
  const int limit = row ? visible_keys(kv, i, p) : 0;
  const float lse2 = row ? lse[static_cast<i64>(bh) * p.Tq + i] * kLog2e : INFINITY;
  const float dot = row ? rowdot[static_cast<i64>(bh) * p.Tq + i] : 0.0f;
  const std::uint8_t* keep_row = keep_s + (warp * 16 + r) * kKeepStride;  // with dropout

  FragC dq_acc[DHP / 16];
  TR_UNROLL
  for (int n = 0; n < DHP / 16; ++n) wmma::fill_fragment(dq_acc[n], 0.0f);

  load_tile<DHP>(qs, p.q + q_base + static_cast<i64>(i0) * ld, p.Tq - i0, p);
  load_tile<DHP>(dos, dout + q_base + static_cast<i64>(i0) * ld, p.Tq - i0, p);
  __syncthreads();
  RowFragments<DHP> q_rows, dout_rows;
  q_rows.load(qs + warp * 16 * S::tile);
  dout_rows.load(dos + warp * 16 * S::tile);
  for (int j0 = 0; j0 < kv_end; j0 += kTile) {
    __syncthreads();
    load_tile<DHP>(ks, p.k + k_base + static_cast<i64>(j0) * ld, p.Tk - j0, p);
    load_tile<DHP>(vs, p.v + k_base + static_cast<i64>(j0) * ld, p.Tk - j0, p);
    if (p.keep) load_keep_tile(keep_s, i0, j0, bh, p);
    __syncthreads();
    scores_tile<DHP>(s, q_rows, ks);
    scores_tile<DHP>(dp, dout_rows, vs);
    __syncwarp();
    TR_UNROLL_4
    for (int c = 0; c < kHalf; ++c) {
      const int col = c0 + rotated(c, kHalf, lane), j = j0 + col;
      const bool visible = j < limit;
      const float pv = visible ? exp2f(s[r * S::scratch + col] * p.scale_log2 - lse2) : 0.0f;
      const float keep = p.keep && visible ? (keep_row[col] ? p.keep_scale : 0.0f) : 1.0f;
      ds[r * S::probs + col] = __float2bfloat16_rn(pv * (dp[r * S::scratch + col] * keep - dot));
    }
    __syncwarp();
    accumulate_product<DHP>(dq_acc, ds, ks);
  }
  const int row0 = i0 + warp * 16;
  store_fragments<DHP>(dq + q_base + static_cast<i64>(row0) * ld, dq_acc, s, p.Tq - row0, p.scale,
                       p, lane);
#endif
}

}  // namespace
}  // namespace tr::cuda::flash
