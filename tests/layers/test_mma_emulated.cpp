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

// D[16 x 8] = A[16 x 16] B, with B read as stored [n][k] (transposed) or [k][n].
__global__ void product_kernel(float* d, const bfloat* a, const bfloat* b, bool transposed) {
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
__global__ void chained_kernel(float* e, const bfloat* a, const bfloat* b1, const bfloat* b2) {
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
    emu::launch(1, 32, 0, product_kernel, d.data(), a.data(), b.data(), transposed);
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
  emu::launch(1, 32, 0, chained_kernel, e.data(), a.data(), b1.data(), b2.data());
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

}  // namespace
}  // namespace tr
