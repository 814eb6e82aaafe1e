// The local passes of the vocabulary-parallel cross entropy (as layers/cpu/shard_kernels.cpp):
// one block per row, row statistics in double from block reductions in a fixed tree, and the
// gradient a block per row too.
//
// The device code and the launch geometry, in a header that also compiles for the host under
// tests/common/cuda_emulation.h (tests/layers/test_embedding_kernels_emulated.cpp runs these
// kernels on the CPU); the launches are in shard.cu.
#pragma once

#include <cmath>
#include <cstdint>

#include "layers/cuda/device_helpers.cuh"
#include "layers/cuda/kernels.h"

namespace tr::cuda::vocab {
namespace {  // each translation unit (the CUDA build's, an emulated test's) has its own copy

constexpr int kRowThreads = 256;

// Launch geometry: every pass takes one block of kRowThreads per row.
inline unsigned row_grid(i64 rows) {
  return static_cast<unsigned>(rows);
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

// One block of kRowThreads per row (row_grid(N)), as the single-device gradient
// (rows_kernels.cuh): no index division per element. dlogits may be logits.
__global__ void ce_shard_backward_kernel(float* dlogits, const float* logits,
                                         const double* logsumexp, const std::int32_t* targets,
                                         i64 V_local, i64 valid, i64 first, double smooth,
                                         double hit, std::int32_t ignore_index, double scale) {
  const i64 n = blockIdx.x;
  const std::int32_t t = targets[n];
  const float* x = logits + n * V_local;
  float* d = dlogits + n * V_local;
  const double lse = logsumexp[n];
  for (i64 v = threadIdx.x; v < V_local; v += blockDim.x) {
    if (t == ignore_index || v >= valid) {
      d[v] = 0.0f;
      continue;
    }
    // As the CPU: the float gradient, then the target's term subtracted from it.
    float g = static_cast<float>(scale * (exp(static_cast<double>(x[v]) - lse) - smooth));
    if (static_cast<i64>(t) - first == v)
      g = static_cast<float>(static_cast<double>(g) - scale * hit);
    d[v] = g;
  }
}

}  // namespace
}  // namespace tr::cuda::vocab
