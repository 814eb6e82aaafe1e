// Row kernels: LayerNorm, softmax and cross entropy. LayerNorm: one warp per row (rows of
// transformer widths, 768 or 1024 values: a warp's shuffles give its sums without shared memory
// or block barriers, and the row stays in L1 across the passes); the others one thread block
// per row (vocabulary-wide rows). Statistics from reductions in a fixed order (deterministic);
// LayerNorm's parameter gradients are summed per column by column_sums_kernels.cuh, from the
// fused backward's per-block partial rows (LayerNormBlockPartials) or, for rows wider than it
// takes, from every element (LayerNormParamTerms); fixed order, no atomics.
//
// The device code and the launch geometry, in a header that also compiles for the host under
// tests/common/cuda_emulation.h (tests/layers/test_rows_kernels_emulated.cpp runs these
// kernels on the CPU against the CPU kernels); the launches are in rows.cu.
#pragma once

#include <cmath>
#include <cstdint>

#include "layers/cuda/device_helpers.cuh"
#include "layers/cuda/kernels.h"
#include "layers/cuda/storage.cuh"

namespace tr::cuda::rowwise {
namespace {  // each translation unit (the CUDA build's, an emulated test's) has its own copy

constexpr int kRowThreads = 256;

// Launch geometry of the row kernels: one block of kRowThreads per row, but LayerNorm's
// kLayerNormRows rows a block (layernorm_grid).
inline unsigned row_grid(i64 rows) {
  return static_cast<unsigned>(rows);
}
constexpr int kLayerNormRows = kRowThreads / 32;
inline unsigned layernorm_grid(i64 rows) {
  return static_cast<unsigned>((rows + kLayerNormRows - 1) / kLayerNormRows);
}
// The row of the calling warp (-1 past the last), and the lane within it.
__device__ inline i64 layernorm_row(i64 rows) {
  const i64 r = static_cast<i64>(blockIdx.x) * kLayerNormRows + threadIdx.x / 32;
  return r < rows ? r : -1;
}

// Statistics accumulated in double: the fp32 sums' rounding would otherwise be the largest
// difference to the CPU kernel for rows with |mean| >> std (double costs nothing here, the
// kernel is bound by memory).
// Out: float, or bf16 (a pre-LN sublayer norm under bf16 activations).
// layernorm_grid(rows) blocks of kRowThreads.
template <typename Out>
__global__ void layernorm_forward_kernel(Out* out, float* mean, float* rstd, const float* in,
                                         const float* weight, const float* bias, i64 rows, i64 cols,
                                         float eps) {
  const i64 r = layernorm_row(rows);
  if (r < 0) return;  // a whole warp: no barrier follows
  const int lane = threadIdx.x % 32;
  const float* x = in + r * cols;
  Out* y = out + r * cols;
  double s = 0;
  for (i64 c = lane; c < cols; c += 32) s += x[c];
  const double mu = warp_sum(s) / static_cast<double>(cols);
  // Two passes: the one-pass E[x^2] - mu^2 cancels badly when |mu| >> sigma.
  double sq = 0;
  for (i64 c = lane; c < cols; c += 32) sq += (x[c] - mu) * (x[c] - mu);
  const double rs_d = 1.0 / sqrt(warp_sum(sq) / static_cast<double>(cols) + eps);
  // As the CPU: the saved statistics are rounded to float, and the output uses those.
  const float m = static_cast<float>(mu), rs = static_cast<float>(rs_d);
  if (lane == 0) {
    mean[r] = m;
    rstd[r] = rs;
  }
  for (i64 c = lane; c < cols; c += 32) store(y, c, (x[c] - m) * rs * weight[c] + bias[c]);
}

// din = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) (+ residual), dxhat = dout w:
// one row's two means, by its warp (every lane), then each element.
struct LayerNormRowMeans {
  float dxhat, dxhat_xhat;
};
template <typename DOut>
__device__ LayerNormRowMeans layernorm_row_means(const DOut* g, const float* x, const float* weight,
                                                 float m, float s, i64 cols, int lane) {
  float a = 0, b = 0;
  for (i64 c = lane; c < cols; c += 32) {
    const float dxhat = load(g, c) * weight[c];
    a += dxhat;
    b += dxhat * (x[c] - m) * s;
  }
  return {warp_sum(a) / static_cast<float>(cols), warp_sum(b) / static_cast<float>(cols)};
}
__device__ inline float layernorm_din_value(float g, float w, float xhat, float s,
                                            const LayerNormRowMeans& means) {
  return s * (g * w - means.dxhat - xhat * means.dxhat_xhat);
}

// DOut: float, or bf16 (the gradient of a bf16 norm output).
// layernorm_grid(rows) blocks of kRowThreads.
template <typename DOut>
__global__ void layernorm_din_kernel(float* din, const DOut* dout, const float* in,
                                     const float* weight, const float* mean, const float* rstd,
                                     const float* residual, i64 rows, i64 cols) {
  const i64 r = layernorm_row(rows);
  if (r < 0) return;  // a whole warp: no barrier follows
  const int lane = threadIdx.x % 32;
  const float* x = in + r * cols;
  const DOut* g = dout + r * cols;
  const float m = mean[r], s = rstd[r];
  const LayerNormRowMeans means = layernorm_row_means(g, x, weight, m, s, cols, lane);
  for (i64 c = lane; c < cols; c += 32) {
    float d = layernorm_din_value(load(g, c), weight[c], (x[c] - m) * s, s, means);
    if (residual) d += residual[r * cols + c];
    din[r * cols + c] = d;
  }
}

// LayerNorm's backward in one pass over dout and in, for rows of at most kFusedLayerNormCols
// values (the transformer widths): din as layernorm_din_kernel, and the parameter gradients'
// terms (dout * xhat, dout) summed on the way. Each warp sums its kFusedRowsPerWarp consecutive
// rows in registers (lane's columns c = lane + 32 j), the block's warps add theirs in warp order
// through shared memory, and the block writes one partial row per term,
// partial[(k * gridDim.x + block) * cols + c]; LayerNormBlockPartials then feeds those rows to
// the column sums. Against din's kernel followed by the column sums of LayerNormParamTerms,
// dout and in are read once instead of twice. Fixed order throughout, no atomics.
// layernorm_fused_grid(rows) blocks of kRowThreads.
constexpr int kFusedRowsPerWarp = 4;
constexpr int kFusedColsPerLane = 32;
constexpr i64 kFusedLayerNormCols = 32 * kFusedColsPerLane;
constexpr i64 kFusedBlockRows = kLayerNormRows * kFusedRowsPerWarp;
inline bool layernorm_backward_fuses(i64 cols) {
  return cols <= kFusedLayerNormCols;
}
inline unsigned layernorm_fused_grid(i64 rows) {
  return static_cast<unsigned>((rows + kFusedBlockRows - 1) / kFusedBlockRows);
}

template <typename DOut>
__global__ void layernorm_backward_fused_kernel(float* din, float* partial, const DOut* dout,
                                                const float* in, const float* weight,
                                                const float* mean, const float* rstd,
                                                const float* residual, i64 rows, i64 cols) {
  __shared__ float block_sums[2][kFusedLayerNormCols];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float dw[kFusedColsPerLane] = {}, db[kFusedColsPerLane] = {};
  const i64 first = blockIdx.x * kFusedBlockRows + warp * kFusedRowsPerWarp;
  for (int i = 0; i < kFusedRowsPerWarp; ++i) {
    const i64 r = first + i;
    if (r >= rows) break;  // the whole warp: the shuffles below see every lane
    const float* x = in + r * cols;
    const DOut* g = dout + r * cols;
    const float m = mean[r], s = rstd[r];
    const LayerNormRowMeans means = layernorm_row_means(g, x, weight, m, s, cols, lane);
    // Unrolled over the lane's columns: dw and db stay in registers.
    TR_UNROLL
    for (int j = 0; j < kFusedColsPerLane; ++j) {
      const i64 c = lane + 32 * j;
      if (c < cols) {
        const float gc = load(g, c), xhat = (x[c] - m) * s;
        float d = layernorm_din_value(gc, weight[c], xhat, s, means);
        if (residual) d += residual[r * cols + c];
        din[r * cols + c] = d;
        dw[j] += gc * xhat;
        db[j] += gc;
      }
    }
  }
  for (int w = 0; w < kLayerNormRows; ++w) {
    if (warp == w) {
      TR_UNROLL
      for (int j = 0; j < kFusedColsPerLane; ++j) {
        const i64 c = lane + 32 * j;
        if (c < cols) {
          block_sums[0][c] = (w == 0 ? 0.0f : block_sums[0][c]) + dw[j];
          block_sums[1][c] = (w == 0 ? 0.0f : block_sums[1][c]) + db[j];
        }
      }
    }
    __syncthreads();
  }
  for (i64 c = threadIdx.x; c < cols; c += blockDim.x) {
    partial[static_cast<i64>(blockIdx.x) * cols + c] = block_sums[0][c];
    partial[(static_cast<i64>(gridDim.x) + blockIdx.x) * cols + c] = block_sums[1][c];
  }
}

// The fused kernel's block partial rows as the column sums' (dweight, dbias) terms.
struct LayerNormBlockPartials {
  const float* partial;
  std::int64_t blocks, cols;
  __device__ void operator()(std::int64_t r, std::int64_t c, float* v) const {
    v[0] = partial[r * cols + c];
    v[1] = partial[(blocks + r) * cols + c];
  }
};

// (dweight, dbias) terms of one element: dout * xhat and dout.
template <typename DOut>
struct LayerNormParamTerms {
  const DOut* dout;
  const float *in, *mean, *rstd;
  std::int64_t cols;
  __device__ void operator()(std::int64_t r, std::int64_t c, float* v) const {
    const float g = load(dout, r * cols + c);
    v[0] = g * (in[r * cols + c] - mean[r]) * rstd[r];
    v[1] = g;
  }
};

__global__ void softmax_forward_kernel(float* out, const float* in, i64 cols) {
  __shared__ float shared[kRowThreads / 32];
  const float* x = in + blockIdx.x * cols;
  float* y = out + blockIdx.x * cols;
  float mx = -INFINITY;
  for (i64 c = threadIdx.x; c < cols; c += blockDim.x) mx = fmaxf(mx, x[c]);
  mx = block_max(mx, shared);
  float s = 0;
  for (i64 c = threadIdx.x; c < cols; c += blockDim.x) {
    y[c] = expf(x[c] - mx);
    s += y[c];
  }
  const float inv = 1.0f / block_sum(s, shared);
  for (i64 c = threadIdx.x; c < cols; c += blockDim.x) y[c] *= inv;
}

__global__ void softmax_backward_kernel(float* din, const float* dout, const float* out, i64 cols) {
  __shared__ float shared[kRowThreads / 32];
  const i64 base = blockIdx.x * cols;
  float s = 0;
  for (i64 c = threadIdx.x; c < cols; c += blockDim.x) s += dout[base + c] * out[base + c];
  s = block_sum(s, shared);
  for (i64 c = threadIdx.x; c < cols; c += blockDim.x)
    din[base + c] = out[base + c] * (dout[base + c] - s);
}

// The better of two candidates of a row's argmax: the larger value, or of equal values the lower
// index. NaN never wins (a row holding NaN: unspecified, as on the CPU).
__device__ __forceinline__ void better_of(float& value, std::int32_t& index, float other_value,
                                          std::int32_t other_index) {
  if (other_value > value || (other_value == value && other_index < index)) {
    value = other_value;
    index = other_index;
  }
}

// out[n] = argmax of row n: each thread's best over its strided columns, then the block's in a
// fixed tree. The index starts at V ("none"), so an all -inf row gives column 0 as the CPU.
__global__ void argmax_rows_kernel(std::int32_t* out, const float* x, i64 V) {
  __shared__ float values[kRowThreads / 32];
  __shared__ std::int32_t indices[kRowThreads / 32];
  const float* row = x + static_cast<i64>(blockIdx.x) * V;
  float best = -INFINITY;
  std::int32_t at = static_cast<std::int32_t>(V);
  for (i64 v = threadIdx.x; v < V; v += blockDim.x)
    better_of(best, at, row[v], static_cast<std::int32_t>(v));
  for (int o = 16; o > 0; o >>= 1)
    better_of(best, at, __shfl_xor_sync(0xffffffffu, best, o), __shfl_xor_sync(0xffffffffu, at, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    values[warp] = best;
    indices[warp] = at;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < static_cast<int>(blockDim.x >> 5); ++w)
      better_of(best, at, values[w], indices[w]);
    out[blockIdx.x] = at < V ? at : 0;
  }
}

// loss = (1 - eps)(lse - x_t) + eps (lse - mean(x)); sums of exp and of x in double as the CPU.
__global__ void cross_entropy_forward_kernel(float* loss, float* logsumexp, const float* logits,
                                             const std::int32_t* targets, i64 V, float eps,
                                             std::int32_t ignore_index) {
  __shared__ double shared_d[kRowThreads / 32];
  __shared__ float shared_f[kRowThreads / 32];
  const i64 n = blockIdx.x;
  const std::int32_t t = targets[n];
  if (t == ignore_index) {
    if (threadIdx.x == 0) loss[n] = logsumexp[n] = 0.0f;
    return;
  }
  const float* x = logits + n * V;
  float mx = -INFINITY;
  for (i64 v = threadIdx.x; v < V; v += blockDim.x) mx = fmaxf(mx, x[v]);
  mx = block_max(mx, shared_f);
  double s = 0, sx = 0;
  for (i64 v = threadIdx.x; v < V; v += blockDim.x) {
    s += exp(static_cast<double>(x[v] - mx));
    sx += x[v];
  }
  s = block_sum(s, shared_d);
  sx = block_sum(sx, shared_d);
  if (threadIdx.x == 0) {
    const double lse = static_cast<double>(mx) + log(s);
    const double e = eps;
    loss[n] = static_cast<float>((1.0 - e) * (lse - static_cast<double>(x[t])) +
                                 e * (lse - sx / static_cast<double>(V)));
    logsumexp[n] = static_cast<float>(lse);
  }
}

// One block of kRowThreads per row (row_grid(N)): the row's target and log-sum-exp are read
// once, and no element divides its index by V (a 64-bit division costs a GPU tens of
// instructions: the grid-stride loop over N x V this replaces was bound by them, not by its
// 8 bytes of memory traffic per element). dlogits may be logits (each element in place).
__global__ void cross_entropy_backward_kernel(float* dlogits, const float* logits,
                                              const float* logsumexp, const std::int32_t* targets,
                                              i64 V, float smooth, float hit,
                                              std::int32_t ignore_index, float scale) {
  const i64 n = blockIdx.x;
  const std::int32_t t = targets[n];
  const float* x = logits + n * V;
  float* d = dlogits + n * V;
  if (t == ignore_index) {
    for (i64 v = threadIdx.x; v < V; v += blockDim.x) d[v] = 0.0f;
    return;
  }
  const float lse = logsumexp[n];
  for (i64 v = threadIdx.x; v < V; v += blockDim.x) {
    float g = scale * (expf(x[v] - lse) - smooth);
    if (v == t) g -= scale * hit;
    d[v] = g;
  }
}

}  // namespace
}  // namespace tr::cuda::rowwise
