// Column sums of a [rows, cols] quantity, added to outputs: the parameter gradients of biases
// and LayerNorm. One thread per column looping over all rows leaves most of the GPU idle (a
// few hundred columns) and took 10 ms for a [25216, 768] LayerNorm; here a grid of
// (32 columns x kChunkRows rows) tiles sums its rows in a fixed tree, and a second kernel adds
// the tiles' partial sums in tile order: deterministic, no atomics.
//
// The device code and the launch geometry, in a header that also compiles for the host under
// tests/common/cuda_emulation.h (tests/layers/test_rows_kernels_emulated.cpp runs it on the
// CPU); the launches are column_sums.cuh's.
#pragma once

#include <cstdint>

#include "layers/cuda/device_helpers.cuh"

namespace tr::cuda::colsum {
namespace {  // each translation unit (the CUDA build's, an emulated test's) has its own copy

constexpr int kColumnTile = 32;  // columns per block (one warp wide: coalesced rows)
constexpr int kColumnRowThreads = 8;
constexpr std::int64_t kChunkRows = 256;

// Launch geometry: the partial sums' grid (column tiles x row chunks) and block, K partial
// rows of `cols` per chunk; then the finish kernel, a grid-stride loop over K * cols.
inline std::int64_t chunks(std::int64_t rows) {
  return (rows + kChunkRows - 1) / kChunkRows;
}
inline dim3 partial_grid(std::int64_t rows, std::int64_t cols) {
  return dim3(static_cast<unsigned>((cols + kColumnTile - 1) / kColumnTile),
              static_cast<unsigned>(chunks(rows)));
}
inline dim3 partial_block() {
  return dim3(kColumnTile, kColumnRowThreads);
}
inline unsigned finish_grid(int K, std::int64_t cols) {
  return grid_for(K * cols);
}

// `Load` gives K values for (row, col): load(r, c, out[K]).
template <int K, typename Load>
__global__ void column_partial_sums_kernel(float* partial, Load load, std::int64_t rows,
                                           std::int64_t cols) {
  __shared__ float tile[K][kColumnRowThreads][kColumnTile];
  const std::int64_t c = blockIdx.x * static_cast<std::int64_t>(kColumnTile) + threadIdx.x;
  const std::int64_t r0 = blockIdx.y * kChunkRows;
  const std::int64_t r1 = r0 + kChunkRows < rows ? r0 + kChunkRows : rows;
  float acc[K] = {};
  if (c < cols)
    for (std::int64_t r = r0 + threadIdx.y; r < r1; r += kColumnRowThreads) {
      float v[K];
      load(r, c, v);
      for (int k = 0; k < K; ++k) acc[k] += v[k];
    }
  for (int k = 0; k < K; ++k) tile[k][threadIdx.y][threadIdx.x] = acc[k];
  __syncthreads();
  if (threadIdx.y == 0 && c < cols)
    for (int k = 0; k < K; ++k) {
      float s = 0;
      for (int y = 0; y < kColumnRowThreads; ++y) s += tile[k][y][threadIdx.x];
      partial[(static_cast<std::int64_t>(k) * gridDim.y + blockIdx.y) * cols + c] = s;
    }
}

template <int K>
struct ColumnOutputs {
  float* p[K];
};

template <int K>
__global__ void column_sums_finish_kernel(ColumnOutputs<K> outs, const float* partial,
                                          std::int64_t chunks, std::int64_t cols) {
  TR_GRID_STRIDE(i, K * cols) {
    const std::int64_t k = i / cols, c = i % cols;
    float s = 0;
    for (std::int64_t j = 0; j < chunks; ++j) s += partial[(k * chunks + j) * cols + c];
    outs.p[k][c] += s;
  }
}

}  // namespace
}  // namespace tr::cuda::colsum
