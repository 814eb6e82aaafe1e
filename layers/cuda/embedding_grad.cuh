// The embedding gradient's launch (the kernel and its method: embedding_kernels.cuh), shared by
// the whole-table and the vocabulary-shard backward.
#pragma once

#include "layers/cuda/embedding_kernels.cuh"
#include "layers/cuda/launch.cuh"

namespace tr::cuda {
namespace {

// dtable[ids[n] - first, :] += dout[n, :] * scale for ids in [first, first + V_local).
inline void embedding_rows_backward(float* dtable, const std::int32_t* ids, const float* dout,
                                    std::int64_t N, std::int64_t d, std::int64_t first,
                                    std::int64_t V_local, float scale) {
  if (N <= 0 || d <= 0) return;
  embed::embedding_rows_backward_kernel<<<embed::kEmbeddingGradBlocks, kThreads, 0,
                                          compute_stream()>>>(dtable, ids, dout, N, d, first,
                                                              V_local, scale);
  TR_CUDA_LAUNCH_CHECK();
}

}  // namespace
}  // namespace tr::cuda
