// Flash attention on bf16 tensor cores with the scores in registers (FlashAttention-2's
// layout): the default bf16 kernels. The WMMA kernels of flash_attention_kernels.cuh stage
// every score tile and every P V product through shared memory, because WMMA's fragments are
// opaque; here mma.sync's fragments (layers/cuda/mma.cuh) let each lane run the online softmax
// on its own accumulators, turn them into the next product's A operand in place, and keep the
// output rows in registers, rescaled as the row maxima grow. Results equal the WMMA kernels'
// up to the order of fp32 additions: the same masks, the same bf16 rounding of the unnormalised
// probabilities, the same lse and the same deterministic backward (dk/dv per key tile, dq per
// query tile; no atomics).
//
// Work split as the WMMA kernels: a block of 4 warps takes 64 rows of one (batch, head), each
// warp 16 of them; the other side streams through shared memory in tiles of 64 (row stride
// DHP + 8 bf16, so that the fragment loads of a warp spread over the banks). Lane l works on
// rows g = l / 4 and g + 8 of its warp's 16, and within every 8 columns on 2t, 2t + 1 (t = l % 4):
// a row's statistics combine over the 4 lanes of its quad (shuffles over lane bits 0 and 1).
//
// Device code in a header so that tests/layers/test_flash_kernels_emulated.cpp runs these
// exact kernels on the CPU (tests/common/cuda_emulation.h); launches in flash_attention.cu.
#pragma once

#include "layers/cuda/flash_attention_common.cuh"
#include "layers/cuda/mma.cuh"

namespace tr::cuda::flash {
namespace {

template <int DHP>
struct MmaTile {
  static constexpr int ld = DHP + 8;  // bf16 per shared row
  static constexpr int elems = kTile * ld;
  static constexpr int kb = DHP / 16;    // k blocks of the head width
  static constexpr int nb = DHP / 8;     // 8-column blocks of a head row (the outputs)
  static constexpr int sb = kTile / 8;   // 8-column blocks of a score row
  static constexpr int pb = kTile / 16;  // k blocks of a score row (P's A fragments)
};

template <int DHP>
constexpr std::size_t mma_forward_smem() {
  return sizeof(bfloat) * 3 * MmaTile<DHP>::elems + kKeepBytes;
}
// Both backward kernels: four head tiles, the dk/dv kernel's row statistics, the keep tile.
template <int DHP>
constexpr std::size_t mma_backward_smem() {
  return sizeof(bfloat) * 4 * MmaTile<DHP>::elems + sizeof(float) * 2 * kTile + kKeepBytes;
}
// Where those lie in a block's dynamic shared memory.
template <int DHP>
struct MmaBackwardSmem {
  bfloat* tile[4];
  float *lse, *rowdot;  // of the query tile (dk/dv)
  std::uint8_t* keep;
  __device__ explicit MmaBackwardSmem(unsigned char* smem) {
    bfloat* tiles = reinterpret_cast<bfloat*>(smem);
    for (int i = 0; i < 4; ++i) tile[i] = tiles + i * MmaTile<DHP>::elems;
    lse = reinterpret_cast<float*>(tiles + 4 * MmaTile<DHP>::elems);
    rowdot = lse + kTile;
    keep = reinterpret_cast<std::uint8_t*>(rowdot + kTile);
  }
};

// The A fragments of a warp's 16 rows from row0 (all DHP columns).
template <int DHP>
__device__ __forceinline__ void load_row_fragments(std::uint32_t a[][4], const bfloat* rows,
                                                   int row0, int lane) {
  TR_UNROLL
  for (int kk = 0; kk < MmaTile<DHP>::kb; ++kk)
    mma::load_a<MmaTile<DHP>::ld>(a[kk], rows, row0, 16 * kk, lane);
}

// acc[n] = rows other^T for the 8 blocks of 8 rows of `other`, the rows given as their A
// fragments (load_row_fragments).
template <int DHP>
__device__ __forceinline__ void scores_of_fragments(float acc[][4], const std::uint32_t a[][4],
                                                    const bfloat* other, int lane) {
  using T = MmaTile<DHP>;
  TR_UNROLL
  for (int n = 0; n < T::sb; ++n) {
    acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
    TR_UNROLL
    for (int kk = 0; kk < T::kb; ++kk) {
      std::uint32_t b[2];
      mma::load_b_transposed<T::ld>(b, other, 8 * n, 16 * kk, lane);
      mma::m16n8k16(acc[n], a[kk], b);
    }
  }
}

// acc[n] = rows[16 rows from row0] other^T (scores of a warp's rows against a streamed tile, or
// the transposed ones of dk/dv), the rows' fragments loaded for this product alone.
template <int DHP>
__device__ __forceinline__ void scores(float acc[][4], const bfloat* rows, int row0,
                                       const bfloat* other, int lane) {
  std::uint32_t a[MmaTile<DHP>::kb][4];
  load_row_fragments<DHP>(a, rows, row0, lane);
  scores_of_fragments<DHP>(acc, a, other, lane);
}

// out[n] += P tile [16 x 64] (the score-shaped accumulators p, rounded to bf16) times the
// streamed tile [64 x DHP].
template <int DHP>
__device__ __forceinline__ void accumulate(float out[][4], const float p[][4], const bfloat* tile,
                                           int lane) {
  using T = MmaTile<DHP>;
  TR_UNROLL
  for (int kk = 0; kk < T::pb; ++kk) {
    std::uint32_t a[4];
    mma::c_to_a(a, p[2 * kk], p[2 * kk + 1]);
    TR_UNROLL
    for (int n = 0; n < T::nb; ++n) {
      std::uint32_t b[2];
      mma::load_b<T::ld>(b, tile, 16 * kk, 8 * n, lane);
      mma::m16n8k16(out[n], a, b);
    }
  }
}

// The lane's two rows of out[16 x DHP] accumulators to global memory (row r at base + r * ld,
// rows >= rows_valid and columns >= Dh skipped), times `scale[h]` for row g + 8h.
template <int DHP>
__device__ __forceinline__ void store_accumulator_rows(bfloat* base, const float acc[][4],
                                                       int rows_valid, const float scale[2],
                                                       const Problem& p, int lane) {
  const int g = lane / 4, t = lane % 4;
  TR_UNROLL
  for (int h = 0; h < 2; ++h) {
    const int r = g + 8 * h;
    if (r >= rows_valid) continue;
    bfloat* row = base + static_cast<i64>(r) * p.ld();
    // The lane's two adjacent columns as one 4-byte store where the row allows (c is even).
    const bool pairs = reinterpret_cast<std::uintptr_t>(row) % 4 == 0;
    TR_UNROLL
    for (int n = 0; n < MmaTile<DHP>::nb; ++n) {
      const int c = 8 * n + 2 * t;
      const float lo = acc[n][2 * h] * scale[h], hi = acc[n][2 * h + 1] * scale[h];
      if (pairs && c + 1 < p.Dh) {
        *reinterpret_cast<std::uint32_t*>(row + c) = mma::pack(lo, hi);
        continue;
      }
      if (c < p.Dh) row[c] = __float2bfloat16_rn(lo);
      if (c + 1 < p.Dh) row[c + 1] = __float2bfloat16_rn(hi);
    }
  }
}

// A row statistic combined over the 4 lanes of a quad (the lanes holding one row).
__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

// ---- forward ----------------------------------------------------------------------------------

template <int DHP>
__global__ void __launch_bounds__(kFlashThreads)
    flash_mma_forward_kernel(bfloat* out, float* lse, Problem p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();
#else
  using T = MmaTile<DHP>;
  TR_DYNAMIC_SMEM(smem);
  bfloat* qs = reinterpret_cast<bfloat*>(smem);
  bfloat* ks = qs + T::elems;
  bfloat* vs = ks + T::elems;
  std::uint8_t* keep_s = reinterpret_cast<std::uint8_t*>(vs + T::elems);

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const auto [bh, ld, q_base, k_base, kv] = block_head(p);
  const int i0 = blockIdx.y * kTile, r0 = warp * 16;
  const int kv_end = visible_keys(kv, min(i0 + kTile, p.Tq) - 1, p);  // any row of the block
  int limit[2];  // keys visible to the lane's rows g and g + 8
  TR_UNROLL
  for (int h = 0; h < 2; ++h) {
    const int i = i0 + r0 + g + 8 * h;
    limit[h] = i < p.Tq ? visible_keys(kv, i, p) : 0;
  }

  float o[T::nb][4];
  TR_UNROLL
  for (int n = 0; n < T::nb; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  // Running maximum (log2 domain) of each row, and this lane's part of its sum.
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

  load_head_tile<DHP, T::ld>(qs, p.q + q_base + static_cast<i64>(i0) * ld, p.Tq - i0, p);
  __syncthreads();
  // The warp's query rows stay in registers for every key tile (loaded once, not per tile).
  std::uint32_t q_frag[T::kb][4];
  load_row_fragments<DHP>(q_frag, qs, r0, lane);
  for (int j0 = 0; j0 < kv_end; j0 += kTile) {
    __syncthreads();  // the previous tiles are read
    load_head_tile<DHP, T::ld>(ks, p.k + k_base + static_cast<i64>(j0) * ld, p.Tk - j0, p);
    load_head_tile<DHP, T::ld>(vs, p.v + k_base + static_cast<i64>(j0) * ld, p.Tk - j0, p);
    if (p.keep) load_keep_tile(keep_s, i0, j0, bh, p);
    __syncthreads();

    float s[T::sb][4];
    scores_of_fragments<DHP>(s, q_frag, ks, lane);
    float tile_max[2] = {-INFINITY, -INFINITY};
    TR_UNROLL
    for (int n = 0; n < T::sb; ++n) {
      TR_UNROLL
      for (int e = 0; e < 4; ++e) {
        const int h = e / 2, j = j0 + 8 * n + 2 * t + e % 2;
        s[n][e] = j < limit[h] ? s[n][e] * p.scale_log2 : -INFINITY;
        tile_max[h] = fmaxf(tile_max[h], s[n][e]);
      }
    }
    float alpha[2];
    TR_UNROLL
    for (int h = 0; h < 2; ++h) {
      const float m_new = fmaxf(m[h], quad_max(tile_max[h]));
      // m_new = -inf: no visible key in this row yet (everything stays 0).
      alpha[h] = m_new == -INFINITY ? 1.0f : exp2f(m[h] - m_new);
      m[h] = m_new;
      l[h] *= alpha[h];
    }
    TR_UNROLL
    for (int n = 0; n < T::nb; ++n) {
      TR_UNROLL
      for (int e = 0; e < 4; ++e) o[n][e] *= alpha[e / 2];
    }
    // Probabilities in place: the sum takes them undropped, P V the dropped ones.
    TR_UNROLL
    for (int n = 0; n < T::sb; ++n) {
      TR_UNROLL
      for (int e = 0; e < 4; ++e) {
        const int h = e / 2, col = 8 * n + 2 * t + e % 2;
        float pv = s[n][e] == -INFINITY ? 0.0f : exp2f(s[n][e] - m[h]);
        l[h] += pv;
        if (p.keep && j0 + col < limit[h])
          pv *= keep_s[(r0 + g + 8 * h) * kKeepStride + col] ? p.keep_scale : 0.0f;
        s[n][e] = pv;
      }
    }
    accumulate<DHP>(o, s, vs, lane);
  }

  float inv[2];
  TR_UNROLL
  for (int h = 0; h < 2; ++h) {
    l[h] = quad_sum(l[h]);
    inv[h] = l[h] > 0.0f ? 1.0f / l[h] : 0.0f;
  }
  const int row0 = i0 + r0;
  store_accumulator_rows<DHP>(out + q_base + static_cast<i64>(row0) * ld, o, p.Tq - row0, inv, p,
                              lane);
  // A row with no visible key: lse = +inf, so that the backward's exp(s - lse) is 0.
  TR_UNROLL
  for (int h = 0; h < 2; ++h) {
    const int i = row0 + g + 8 * h;
    if (t == 0 && i < p.Tq)
      lse[static_cast<i64>(bh) * p.Tq + i] = l[h] > 0.0f ? (m[h] + log2f(l[h])) * kLn2 : INFINITY;
  }
#endif
}

// ---- backward ---------------------------------------------------------------------------------

// dk, dv for 64 keys of one (batch, head), streaming the query tiles that see them:
// dv = sum_i dropped(P)^T dout, dk = scale sum_i dS^T q, dS = P (dP - rowdot), dP through the
// dropout mask. The scores are computed transposed ([keys, queries]), so that each warp's
// accumulator rows are its keys and P^T, dS^T are the A operands of dv and dk directly.
template <int DHP>
__global__ void __launch_bounds__(kFlashThreads)
    flash_mma_dkdv_kernel(bfloat* dk, bfloat* dv, const bfloat* dout, const float* lse,
                          const float* rowdot, Problem p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();
#else
  using T = MmaTile<DHP>;
  TR_DYNAMIC_SMEM(smem);
  const MmaBackwardSmem<DHP> shared(smem);
  bfloat *ks = shared.tile[0], *vs = shared.tile[1], *qs = shared.tile[2], *dos = shared.tile[3];
  float *lse_s = shared.lse, *rowdot_s = shared.rowdot;
  std::uint8_t* keep_s = shared.keep;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const auto [bh, ld, q_base, k_base, kv] = block_head(p);
  const int j0 = blockIdx.y * kTile, r0 = warp * 16;

  float dk_acc[T::nb][4], dv_acc[T::nb][4];
  TR_UNROLL
  for (int n = 0; n < T::nb; ++n) TR_UNROLL
  for (int e = 0; e < 4; ++e) dk_acc[n][e] = dv_acc[n][e] = 0.0f;

  load_head_tile<DHP, T::ld>(ks, p.k + k_base + static_cast<i64>(j0) * ld, p.Tk - j0, p);
  load_head_tile<DHP, T::ld>(vs, p.v + k_base + static_cast<i64>(j0) * ld, p.Tk - j0, p);
  for (int i0 = first_query_tile(p, j0, kv); i0 < p.Tq; i0 += kTile) {
    __syncthreads();  // the previous query tiles are read (and the key tiles are written)
    load_head_tile<DHP, T::ld>(qs, p.q + q_base + static_cast<i64>(i0) * ld, p.Tq - i0, p);
    load_head_tile<DHP, T::ld>(dos, dout + q_base + static_cast<i64>(i0) * ld, p.Tq - i0, p);
    load_row_stats(lse_s, rowdot_s, lse, rowdot, bh, i0, p);
    if (p.keep) load_keep_tile(keep_s, i0, j0, bh, p);
    __syncthreads();

    float st[T::sb][4], dpt[T::sb][4];  // S^T and dP^T: rows keys, columns queries
    scores<DHP>(st, ks, r0, qs, lane);
    scores<DHP>(dpt, vs, r0, dos, lane);
    TR_UNROLL
    for (int n = 0; n < T::sb; ++n) {
      TR_UNROLL
      for (int e = 0; e < 4; ++e) {
        const int h = e / 2, col = 8 * n + 2 * t + e % 2, i = i0 + col, j = j0 + r0 + g + 8 * h;
        const bool visible = i < p.Tq && j < kv && (!p.causal || j <= i + p.q_offset);
        const float pv = visible ? exp2f(st[n][e] * p.scale_log2 - lse_s[col] * kLog2e) : 0.0f;
        float keep = 1.0f;
        if (p.keep && visible)
          keep = keep_s[col * kKeepStride + r0 + g + 8 * h] ? p.keep_scale : 0.0f;
        st[n][e] = pv * keep;                                 // dropped P^T
        dpt[n][e] = pv * (dpt[n][e] * keep - rowdot_s[col]);  // dS^T
      }
    }
    accumulate<DHP>(dv_acc, st, dos, lane);
    accumulate<DHP>(dk_acc, dpt, qs, lane);
  }

  const int row0 = j0 + r0;
  const float one[2] = {1.0f, 1.0f}, scale[2] = {p.scale, p.scale};
  store_accumulator_rows<DHP>(dv + k_base + static_cast<i64>(row0) * ld, dv_acc, p.Tk - row0, one,
                              p, lane);
  store_accumulator_rows<DHP>(dk + k_base + static_cast<i64>(row0) * ld, dk_acc, p.Tk - row0, scale,
                              p, lane);
#endif
}

// dq for 64 queries of one (batch, head), streaming the key tiles they see:
// dq = scale sum_j dS k.
template <int DHP>
__global__ void __launch_bounds__(kFlashThreads)
    flash_mma_dq_kernel(bfloat* dq, const bfloat* dout, const float* lse, const float* rowdot,
                        Problem p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();
#else
  using T = MmaTile<DHP>;
  TR_DYNAMIC_SMEM(smem);
  const MmaBackwardSmem<DHP> shared(smem);  // the row statistics' space unused here
  bfloat *qs = shared.tile[0], *dos = shared.tile[1], *ks = shared.tile[2], *vs = shared.tile[3];
  std::uint8_t* keep_s = shared.keep;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const auto [bh, ld, q_base, k_base, kv] = block_head(p);
  const int i0 = blockIdx.y * kTile, r0 = warp * 16;
  const int kv_end = visible_keys(kv, min(i0 + kTile, p.Tq) - 1, p);
  int limit[2];
  float lse2[2], dot[2];
  TR_UNROLL
  for (int h = 0; h < 2; ++h) {
    const int i = i0 + r0 + g + 8 * h;
    const bool row = i < p.Tq;
    limit[h] = row ? visible_keys(kv, i, p) : 0;
    lse2[h] = row ? lse[static_cast<i64>(bh) * p.Tq + i] * kLog2e : INFINITY;
    dot[h] = row ? rowdot[static_cast<i64>(bh) * p.Tq + i] : 0.0f;
  }

  float dq_acc[T::nb][4];
  TR_UNROLL
  for (int n = 0; n < T::nb; ++n) dq_acc[n][0] = dq_acc[n][1] = dq_acc[n][2] = dq_acc[n][3] = 0.0f;

  load_head_tile<DHP, T::ld>(qs, p.q + q_base + static_cast<i64>(i0) * ld, p.Tq - i0, p);
  load_head_tile<DHP, T::ld>(dos, dout + q_base + static_cast<i64>(i0) * ld, p.Tq - i0, p);
  for (int j0 = 0; j0 < kv_end; j0 += kTile) {
    __syncthreads();
    load_head_tile<DHP, T::ld>(ks, p.k + k_base + static_cast<i64>(j0) * ld, p.Tk - j0, p);
    load_head_tile<DHP, T::ld>(vs, p.v + k_base + static_cast<i64>(j0) * ld, p.Tk - j0, p);
    if (p.keep) load_keep_tile(keep_s, i0, j0, bh, p);
    __syncthreads();

    float s[T::sb][4], dp[T::sb][4];
    scores<DHP>(s, qs, r0, ks, lane);
    scores<DHP>(dp, dos, r0, vs, lane);
    TR_UNROLL
    for (int n = 0; n < T::sb; ++n) {
      TR_UNROLL
      for (int e = 0; e < 4; ++e) {
        const int h = e / 2, col = 8 * n + 2 * t + e % 2;
        const bool visible = j0 + col < limit[h];
        const float pv = visible ? exp2f(s[n][e] * p.scale_log2 - lse2[h]) : 0.0f;
        const float keep =
            p.keep && visible ? (keep_s[(r0 + g + 8 * h) * kKeepStride + col] ? p.keep_scale : 0.0f)
                              : 1.0f;
        s[n][e] = pv * (dp[n][e] * keep - dot[h]);  // dS
      }
    }
    accumulate<DHP>(dq_acc, s, ks, lane);
  }
  const int row0 = i0 + r0;
  const float scale[2] = {p.scale, p.scale};
  store_accumulator_rows<DHP>(dq + q_base + static_cast<i64>(row0) * ld, dq_acc, p.Tq - row0, scale,
                              p, lane);
#endif
}

}  // namespace
}  // namespace tr::cuda::flash
