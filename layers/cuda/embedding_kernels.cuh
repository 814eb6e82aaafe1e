// The embedding kernels: the lookups (whole table and vocabulary shard) and the gradient
// dtable[ids[n] - first, :] += dout[n, :] * scale for the ids a (vocabulary shard of the)
// table holds, tokens in order so that repeated ids add up as on the CPU, without atomics. One
// thread per column over all tokens left the GPU nearly idle (3.3 ms per call for 8192 tokens
// of width 1024); here block b of kEmbeddingGradBlocks owns the rows r with r % blocks == b:
// every block reads all ids and adds the rows it owns, in token order (a first version walking
// the ids from global memory one by one was still 4 ms: latency-bound).
//
// The device code and the launch geometry, in a header that also compiles for the host under
// tests/common/cuda_emulation.h (tests/layers/test_embedding_kernels_emulated.cpp runs these
// kernels on the CPU); the launches are in embedding_grad.cuh, elementwise.cu and shard.cu.
#pragma once

#include <cstdint>

#include "layers/cuda/device_helpers.cuh"
#include "layers/cuda/kernels.h"

namespace tr::cuda::embed {
namespace {  // each translation unit (the CUDA build's, an emulated test's) has its own copy

// Launch geometry: the gradient takes kEmbeddingGradBlocks blocks of kThreads (ids staged in
// chunks of kThreads); the lookups a block per token (grid_for_rows(N)).
constexpr int kEmbeddingGradBlocks = 512;

// The lookups read each token's id once.
__global__ void embedding_forward_kernel(float* out, const std::int32_t* ids, const float* table,
                                         i64 N, i64 d, float scale) {
  TR_ROWS_STRIDE(n, N) {
    const float* row = table + static_cast<i64>(ids[n]) * d;
    TR_ROW_COLUMNS(c, d) out[n * d + c] = row[c] * scale;
  }
}
__global__ void embedding_forward_shard_kernel(float* out, const std::int32_t* ids,
                                               const float* table, i64 N, i64 d, i64 first,
                                               i64 V_local, float scale) {
  TR_ROWS_STRIDE(n, N) {
    const i64 r = static_cast<i64>(ids[n]) - first;
    const float* row = r < 0 || r >= V_local ? nullptr : table + r * d;
    TR_ROW_COLUMNS(c, d) out[n * d + c] = row ? row[c] * scale : 0.0f;
  }
}

__global__ void embedding_rows_backward_kernel(float* dtable, const std::int32_t* ids,
                                               const float* dout, std::int64_t N, std::int64_t d,
                                               std::int64_t first, std::int64_t V_local,
                                               float scale) {
  // Ids come in chunks of blockDim.x, each thread deciding for one whether this block owns its
  // row (-1: not ours), so that the block's walk over the chunk reads shared memory only.
  __shared__ std::int64_t owned[kThreads];
  for (std::int64_t n0 = 0; n0 < N; n0 += blockDim.x) {
    __syncthreads();  // the previous chunk is done with
    const std::int64_t n = n0 + threadIdx.x;
    std::int64_t row = -1;
    if (n < N) {
      row = static_cast<std::int64_t>(ids[n]) - first;
      if (row < 0 || row >= V_local || row % gridDim.x != blockIdx.x) row = -1;
    }
    owned[threadIdx.x] = row;
    __syncthreads();
    const std::int64_t count = N - n0 < blockDim.x ? N - n0 : blockDim.x;
    for (std::int64_t j = 0; j < count; ++j) {
      const std::int64_t r = owned[j];
      if (r < 0) continue;
      for (std::int64_t c = threadIdx.x; c < d; c += blockDim.x)
        dtable[r * d + c] += dout[(n0 + j) * d + c] * scale;
    }
  }
}

}  // namespace
}  // namespace tr::cuda::embed
