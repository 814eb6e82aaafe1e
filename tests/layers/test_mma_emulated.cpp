// The tensor-core primitive of layers/cuda/mma.cuh on its own (what the flash kernels of
// flash_attention_mma_kernels.cuh are built on), compiled for the host and run by one warp under
// tests/common/cuda_emulation.h: each fragment loader feeding mma.sync m16n8k16 against an fp64
// product of the same bf16 values, and a product's accumulators turned into the next product's
// A operand (c_to_a), as the flash kernels chain S = Q K^T into P V. The products of bf16
// values are exact in fp32, so the only error is fp32 summation: 1e-6 of the largest result.
#include "common/cuda_emulation.h"
// (the emulation first: the kernel header compiles against it)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "layers/cuda/mma.cuh"

namespace tr {
namespace {

using bfloat = cuda::mma::bfloat;
constexpr int kLd = 24;  // a skewed row stride (bf16), as the flash kernels' shared tiles

// rows x kLd bf16 values in [-2, 2), rounded from floats; columns past `cols` hold NaN.
std::vector<bfloat> random_tile(int rows, int cols, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  std::vector<bfloat> t(static_cast<std::size_t>(rows * kLd), __ushort_as_bfloat16(0xFFFF));
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) t[r * kLd + c] = __float2bfloat16_rn(u(rng));
  return t;
}
double at(const std::vector<bfloat>& t, int r, int c) {
  return __bfloat162float(t[r * kLd + c]);
}

// ldmatrix reads shared memory only: each kernel first copies its tiles there (as the flash
// kernels do), `elements` bf16 values of each, one after another.
constexpr int kTileElements = 16 * kLd;
constexpr std::size_t kSmemBytes = 3 * kTileElements * sizeof(bfloat);
__device__ const bfloat* stage(unsigned char* smem, int slot, const bfloat* tile, int elements) {
  bfloat* at = reinterpret_cast<bfloat*>(smem) + slot * kTileElements;
  for (int i = threadIdx.x; i < elements; i += 32) at[i] = tile[i];
  __syncwarp();
  return at;
}

// D[16 x 8] = A[16 x 16] B, with B read as stored [n][k] (transposed) or [k][n].
__global__ void product_kernel(float* d, const bfloat* a_tile, const bfloat* b_tile,
                               bool transposed) {
  TR_DYNAMIC_SMEM(smem);
  const bfloat* a = stage(smem, 0, a_tile, 16 * kLd);
  const bfloat* b = stage(smem, 1, b_tile, (transposed ? 8 : 16) * kLd);
  const int lane = threadIdx.x;
  std::uint32_t fa[4], fb[2];
  cuda::mma::load_a<kLd>(fa, a, 0, 0, lane);
  if (transposed)
    cuda::mma::load_b_transposed<kLd>(fb, b, 0, 0, lane);
  else
    cuda::mma::load_b<kLd>(fb, b, 0, 0, lane);
  float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  cuda::mma::m16n8k16(c, fa, fb);
  const int g = lane / 4, t = lane % 4;
  for (int e = 0; e < 4; ++e) d[(g + 8 * (e / 2)) * 8 + 2 * t + e % 2] = c[e];
}

// E[16 x 8] = bf16(A[16 x 16] B1[16 x 16]) B2[16 x 8]: the first product in two 8-column
// blocks, whose accumulators become the second's A fragment in the lanes (c_to_a).
__global__ void chained_kernel(float* e, const bfloat* a_tile, const bfloat* b1_tile,
                               const bfloat* b2_tile) {
  TR_DYNAMIC_SMEM(smem);
  const bfloat* a = stage(smem, 0, a_tile, 16 * kLd);
  const bfloat* b1 = stage(smem, 1, b1_tile, 16 * kLd);
  const bfloat* b2 = stage(smem, 2, b2_tile, 16 * kLd);
  const int lane = threadIdx.x;
  std::uint32_t fa[4];
  cuda::mma::load_a<kLd>(fa, a, 0, 0, lane);
  float c[2][4] = {};
  for (int n = 0; n < 2; ++n) {
    std::uint32_t fb[2];
    cuda::mma::load_b<kLd>(fb, b1, 0, 8 * n, lane);
    cuda::mma::m16n8k16(c[n], fa, fb);
  }
  std::uint32_t fp[4], fb2[2];
  cuda::mma::c_to_a(fp, c[0], c[1]);
  cuda::mma::load_b<kLd>(fb2, b2, 0, 0, lane);
  float out[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  cuda::mma::m16n8k16(out, fp, fb2);
  const int g = lane / 4, t = lane % 4;
  for (int i = 0; i < 4; ++i) e[(g + 8 * (i / 2)) * 8 + 2 * t + i % 2] = out[i];
}

double max_error_to_largest(const std::vector<float>& got, const std::vector<double>& want) {
  double largest = 0, worst = 0;
  for (double w : want) largest = std::max(largest, std::abs(w));
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double e = std::abs(got[i] - want[i]);
    worst = std::isnan(e) ? INFINITY : std::max(worst, e);
  }
  return worst / largest;
}

TEST(EmulatedMma, ProductOfEachOperandLayout) {
  const std::vector<bfloat> a = random_tile(16, 16, 1);
  for (const bool transposed : {true, false}) {
    // B [16 x 8] stored [n][k] (8 rows of 16) or [k][n] (16 rows of 8).
    const std::vector<bfloat> b = transposed ? random_tile(8, 16, 2) : random_tile(16, 8, 2);
    std::vector<float> d(16 * 8, NAN);
    emu::launch(1, 32, kSmemBytes, product_kernel, d.data(), a.data(), b.data(), transposed);
    std::vector<double> want(16 * 8, 0.0);
    for (int r = 0; r < 16; ++r)
      for (int n = 0; n < 8; ++n)
        for (int k = 0; k < 16; ++k)
          want[r * 8 + n] += at(a, r, k) * (transposed ? at(b, n, k) : at(b, k, n));
    EXPECT_LE(max_error_to_largest(d, want), 1e-6) << (transposed ? "B as [n][k]" : "B as [k][n]");
  }
}

TEST(EmulatedMma, AccumulatorsBecomeTheNextProductsOperand) {
  const std::vector<bfloat> a = random_tile(16, 16, 3), b1 = random_tile(16, 16, 4),
                            b2 = random_tile(16, 8, 5);
  std::vector<float> e(16 * 8, NAN);
  emu::launch(1, 32, kSmemBytes, chained_kernel, e.data(), a.data(), b1.data(), b2.data());
  std::vector<double> want(16 * 8, 0.0);
  for (int r = 0; r < 16; ++r) {
    double row[16] = {};
    for (int c = 0; c < 16; ++c) {
      float sum = 0.0f;  // the first product as the kernel holds it: fp32, then bf16
      for (int k = 0; k < 16; ++k)
        sum += static_cast<float>(at(a, r, k)) * static_cast<float>(at(b1, k, c));
      row[c] = __bfloat162float(__float2bfloat16_rn(sum));
    }
    for (int n = 0; n < 8; ++n)
      for (int c = 0; c < 16; ++c) want[r * 8 + n] += row[c] * at(b2, c, n);
  }
  EXPECT_LE(max_error_to_largest(e, want), 1e-6);
}

// The hardware's rules the emulation enforces, so that a kernel breaking them fails here as it
// would (or worse, silently) on a GPU.
__global__ void ldmatrix_from_global_kernel(const bfloat* tile) {
  std::uint32_t fa[4];
  cuda::mma::load_a<kLd>(fa, tile, 0, 0, threadIdx.x);
}
__global__ void shuffle_after_return_kernel(float* out) {
  if (threadIdx.x >= 16) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
}
__global__ void mma_after_return_kernel(float* out) {
  if (threadIdx.x % 2 == 1) return;
  std::uint32_t a[4] = {}, b[2] = {};
  float c[4] = {};
  cuda::mma::m16n8k16(c, a, b);
  out[threadIdx.x] = c[0];
}

TEST(EmulatedWarpRules, LdmatrixOutsideSharedMemoryAborts) {
  const std::vector<bfloat> a = random_tile(16, 16, 1);
  EXPECT_DEATH(emu::launch(1, 32, 0, ldmatrix_from_global_kernel, a.data()),
               "ldmatrix row address .* is outside shared memory");
}

TEST(EmulatedWarpRules, CollectivesAfterLanesReturnedAbort) {
  std::vector<float> out(32);
  EXPECT_DEATH(emu::launch(1, 32, 0, shuffle_after_return_kernel, out.data()),
               "a shuffle in warp 0 of block \\(0, 0, 0\\) after 16 of its 32 lanes returned");
  EXPECT_DEATH(emu::launch(1, 32, 0, mma_after_return_kernel, out.data()),
               "mma.sync in warp 0 .* after 16 of its 32 lanes returned");
}

}  // namespace
}  // namespace tr
