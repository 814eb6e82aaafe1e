// Vocabulary-parallel kernels (as layers/cpu/shard_kernels.cpp): the launches of the sharded
// embedding lookups (embedding_kernels.cuh) and of the local passes of the vocabulary-parallel
// cross entropy (shard_kernels.cuh), row statistics in double.
#include "layers/cuda/embedding_grad.cuh"
#include "layers/cuda/embedding_kernels.cuh"
#include "layers/cuda/kernels.h"
#include "layers/cuda/launch.cuh"
#include "layers/cuda/shard_kernels.cuh"

namespace tr::cuda {

using namespace embed;
using namespace vocab;

void embedding_forward_shard(float* out, const std::int32_t* ids, const float* table, i64 N, i64 d,
                             i64 first, i64 V_local, float scale) {
  if (N * d <= 0) return;
  embedding_forward_shard_kernel<<<grid_for_rows(N), kThreads, 0, compute_stream()>>>(
      out, ids, table, N, d, first, V_local, scale);
  TR_CUDA_LAUNCH_CHECK();
}

void embedding_backward_shard_accumulate(float* dtable, const std::int32_t* ids, const float* dout,
                                         i64 N, i64 d, i64 first, i64 V_local, float scale) {
  embedding_rows_backward(dtable, ids, dout, N, d, first, V_local, scale);
}

void ce_shard_max(double* row_max, const float* logits, i64 N, i64 V_local, i64 valid) {
  if (N <= 0) return;
  ce_shard_max_kernel<<<row_grid(N), kRowThreads, 0, compute_stream()>>>(row_max, logits, V_local,
                                                                         valid);
  TR_CUDA_LAUNCH_CHECK();
}

void ce_shard_sums(double* sums, const float* logits, const std::int32_t* targets,
                   const double* row_max, i64 N, i64 V_local, i64 valid, i64 first,
                   std::int32_t ignore_index) {
  if (N <= 0) return;
  ce_shard_sums_kernel<<<row_grid(N), kRowThreads, 0, compute_stream()>>>(
      sums, logits, targets, row_max, N, V_local, valid, first, ignore_index);
  TR_CUDA_LAUNCH_CHECK();
}

void ce_shard_backward(float* dlogits, const float* logits, const double* logsumexp,
                       const std::int32_t* targets, i64 N, i64 V_local, i64 valid, i64 first, i64 V,
                       float eps, std::int32_t ignore_index, float scale) {
  if (N * V_local <= 0) return;
  const double smooth = static_cast<double>(eps) / static_cast<double>(V);
  const double hit = 1.0 - static_cast<double>(eps);
  ce_shard_backward_kernel<<<row_grid(N), kRowThreads, 0, compute_stream()>>>(
      dlogits, logits, logsumexp, targets, V_local, valid, first, smooth, hit, ignore_index,
      static_cast<double>(scale));
  TR_CUDA_LAUNCH_CHECK();
}

}  // namespace tr::cuda
