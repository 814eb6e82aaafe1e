// Column sums added to outputs (bias and LayerNorm parameter gradients): the launches of
// column_sums_kernels.cuh (the method is described there).
#pragma once

#include <array>

#include "layers/cuda/column_sums_kernels.cuh"
#include "layers/cuda/launch.cuh"

namespace tr::cuda {
namespace {

// outs[k][c] += sum over rows r of load(r, c)[k], k < K.
template <int K, typename Load>
void column_sums_accumulate(const std::array<float*, K>& outs, Load load, std::int64_t rows,
                            std::int64_t cols) {
  using namespace colsum;
  if (rows <= 0 || cols <= 0) return;
  const std::int64_t n_chunks = chunks(rows);
  TR_CHECK(n_chunks <= 65535, "column sums: too many rows");
  ColumnOutputs<K> out_ptrs{};
  for (int k = 0; k < K; ++k) out_ptrs.p[k] = outs[k];
  const StreamScratch partials(static_cast<std::size_t>(K * n_chunks * cols) * sizeof(float));
  float* partial = partials.as<float>();
  column_partial_sums_kernel<K><<<partial_grid(rows, cols), partial_block(), 0, compute_stream()>>>(
      partial, load, rows, cols);
  TR_CUDA_LAUNCH_CHECK();
  column_sums_finish_kernel<K>
      <<<finish_grid(K, cols), kThreads, 0, compute_stream()>>>(out_ptrs, partial, n_chunks, cols);
  TR_CUDA_LAUNCH_CHECK();
}

}  // namespace
}  // namespace tr::cuda
