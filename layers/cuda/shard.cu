// Vocabulary-parallel kernels (as layers/cpu/shard_kernels.cpp): sharded embedding lookups and
// the local passes of the vocabulary-parallel cross entropy, row statistics in double.
#include <cmath>

#include "layers/cuda/embedding_grad.cuh"
#include "layers/cuda/kernels.h"
#include "layers/cuda/launch.cuh"

namespace tr::cuda {

namespace {

constexpr int kRowThreads = 256;

__global__ void embedding_forward_shard_kernel(float* out, const std::int32_t* ids,
                                               const float* table, i64 N, i64 d, i64 first,
                                               i64 V_local, float scale) {
  TR_GRID_STRIDE(i, N * d) {
    const i64 row = static_cast<i64>(ids[i / d]) - first;
    out[i] = (row < 0 || row >= V_local) ? 0.0f : table[row * d + i % d] * scale;
  }
}

__global__ void ce_shard_max_kernel(double* row_max, const float* logits, i64 V_local, i64 valid) {
  __shared__ double shared[kRowThreads / 32];
  const float* x = logits + blockIdx.x * V_local;
  double m = -INFINITY;
  for (i64 v = threadIdx.x; v < valid; v += blockDim.x) m = fmax(m, static_cast<double>(x[v]));
  m = block_max(m, shared);
  if (threadIdx.x == 0) row_max[blockIdx.x] = m;
}

__global__ void ce_shard_sums_kernel(double* sums, const float* logits, const std::int32_t* targets,
                                     const double* row_max, i64 N, i64 V_local, i64 valid,
                                     i64 first, std::int32_t ignore_index) {
  __shared__ double shared[kRowThreads / 32];
  const i64 n = blockIdx.x;
  const bool counted = targets[n] != ignore_index;
  const float* x = logits + n * V_local;
  double sum_exp = 0, sum_x = 0;
  if (counted) {
    for (i64 v = threadIdx.x; v < valid; v += blockDim.x) {
      const double xv = x[v];
      sum_exp += exp(xv - row_max[n]);
      sum_x += xv;
    }
  }
  sum_exp = block_sum(sum_exp, shared);
  sum_x = block_sum(sum_x, shared);
  if (threadIdx.x == 0) {
    const i64 t = static_cast<i64>(targets[n]) - first;
    sums[n] = sum_exp;
    sums[N + n] = counted && t >= 0 && t < valid ? static_cast<double>(x[t]) : 0.0;
    sums[2 * N + n] = sum_x;
  }
}

__global__ void ce_shard_backward_kernel(float* dlogits, const float* logits,
                                         const double* logsumexp, const std::int32_t* targets,
                                         i64 N, i64 V_local, i64 valid, i64 first, double smooth,
                                         double hit, std::int32_t ignore_index, double scale) {
  TR_GRID_STRIDE(i, N * V_local) {
    const i64 n = i / V_local, v = i % V_local;
    if (targets[n] == ignore_index || v >= valid) {
      dlogits[i] = 0.0f;
    } else {
      // As the CPU: the float gradient, then the target's term subtracted from it.
      float g =
          static_cast<float>(scale * (exp(static_cast<double>(logits[i]) - logsumexp[n]) - smooth));
      if (static_cast<i64>(targets[n]) - first == v)
        g = static_cast<float>(static_cast<double>(g) - scale * hit);
      dlogits[i] = g;
    }
  }
}

}  // namespace

void embedding_forward_shard(float* out, const std::int32_t* ids, const float* table, i64 N, i64 d,
                             i64 first, i64 V_local, float scale) {
  if (N * d <= 0) return;
  embedding_forward_shard_kernel<<<grid_for(N * d), kThreads, 0, compute_stream()>>>(
      out, ids, table, N, d, first, V_local, scale);
  TR_CUDA_LAUNCH_CHECK();
}

void embedding_backward_shard_accumulate(float* dtable, const std::int32_t* ids, const float* dout,
                                         i64 N, i64 d, i64 first, i64 V_local, float scale) {
  embedding_rows_backward(dtable, ids, dout, N, d, first, V_local, scale);
}

void ce_shard_max(double* row_max, const float* logits, i64 N, i64 V_local, i64 valid) {
  if (N <= 0) return;
  ce_shard_max_kernel<<<static_cast<unsigned>(N), kRowThreads, 0, compute_stream()>>>(
      row_max, logits, V_local, valid);
  TR_CUDA_LAUNCH_CHECK();
}

void ce_shard_sums(double* sums, const float* logits, const std::int32_t* targets,
                   const double* row_max, i64 N, i64 V_local, i64 valid, i64 first,
                   std::int32_t ignore_index) {
  if (N <= 0) return;
  ce_shard_sums_kernel<<<static_cast<unsigned>(N), kRowThreads, 0, compute_stream()>>>(
      sums, logits, targets, row_max, N, V_local, valid, first, ignore_index);
  TR_CUDA_LAUNCH_CHECK();
}

void ce_shard_backward(float* dlogits, const float* logits, const double* logsumexp,
                       const std::int32_t* targets, i64 N, i64 V_local, i64 valid, i64 first, i64 V,
                       float eps, std::int32_t ignore_index, float scale) {
  if (N * V_local <= 0) return;
  const double smooth = static_cast<double>(eps) / static_cast<double>(V);
  const double hit = 1.0 - static_cast<double>(eps);
  ce_shard_backward_kernel<<<grid_for(N * V_local), kThreads, 0, compute_stream()>>>(
      dlogits, logits, logsumexp, targets, N, V_local, valid, first, smooth, hit, ignore_index,
      static_cast<double>(scale));
  TR_CUDA_LAUNCH_CHECK();
}

}  // namespace tr::cuda
