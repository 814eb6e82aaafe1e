// column_sums_accumulate (layers/cuda/column_sums.cuh) on the CUDA emulation: the kernels of
// layers/cuda/column_sums_kernels.cuh with the launches' geometry. Include after
// common/cuda_emulation.h.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "layers/cuda/column_sums_kernels.cuh"

namespace tr::emu_test {

// outs[k][c] += sum over rows r of load(r, c)[k]; the partial sums start as NaN, as the
// launches' uninitialised scratch.
template <int K, typename Load>
void column_sums_accumulate(const std::array<float*, K>& outs, Load load, std::int64_t rows,
                            std::int64_t cols) {
  namespace cs = cuda::colsum;
  if (rows <= 0 || cols <= 0) return;
  const std::int64_t chunks = cs::chunks(rows);
  cs::ColumnOutputs<K> out_ptrs{};
  for (int k = 0; k < K; ++k) out_ptrs.p[k] = outs[k];
  std::vector<float> partial(static_cast<std::size_t>(K * chunks * cols), NAN);
  emu::launch(cs::partial_grid(rows, cols), cs::partial_block(), 0,
              cs::column_partial_sums_kernel<K, Load>, partial.data(), load, rows, cols);
  emu::launch(cs::finish_grid(K, cols), cuda::kThreads, 0, cs::column_sums_finish_kernel<K>,
              out_ptrs, static_cast<const float*>(partial.data()), chunks, cols);
}

}  // namespace tr::emu_test
