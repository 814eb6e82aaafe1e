// The CUDA row kernels (layers/cuda/rows_kernels.cuh: LayerNorm forward and backward in f32
// and with a bf16 output / bf16 output gradient, softmax, cross entropy) and the column sums
// of LayerNorm's parameter gradients (layers/cuda/column_sums_kernels.cuh), compiled for the
// host and run under tests/common/cuda_emulation.h with the launches' geometry, against the
// CPU kernels (layers/cpu/kernels.h) on the same inputs: fp32 within 1e-5 relative; bf16
// outputs against the CPU op on bf16 tensors (layers/ops.h) within 1e-2; the row argmax equal.
// Shapes: rows wider
// than a block (256 threads), narrower than a warp, not multiples of 32; more than one
// 256-row chunk and a ragged 32-column tile for the column sums. Outputs start as NaN.
#include "common/cuda_emulation.h"
// (the emulation first: the kernel headers compile against it)
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <ostream>
#include <vector>

#include "common/emulated_column_sums.h"
#include "common/emulated_kernels.h"
#include "layers/cpu/kernels.h"
#include "layers/cuda/rows_kernels.cuh"
#include "layers/ops.h"

namespace tr {
namespace {

using namespace emu_test;
namespace rw = cuda::rowwise;
using cuda::bf16;

constexpr double kTol = 1e-5;

// ---- the launches of rows.cu and column_sums.cuh, on the emulation ------------------------

template <typename Out>
void layernorm_forward(Out* out, float* mean, float* rstd, const float* in, const float* weight,
                       const float* bias, i64 rows, i64 cols, float eps) {
  emu::launch(rw::layernorm_grid(rows), rw::kRowThreads, 0, rw::layernorm_forward_kernel<Out>, out,
              mean, rstd, in, weight, bias, rows, cols, eps);
}

template <typename DOut>
void layernorm_backward(float* din, float* dweight, float* dbias, const DOut* dout, const float* in,
                        const float* weight, const float* mean, const float* rstd, i64 rows,
                        i64 cols, const float* residual) {
  if (rw::layernorm_backward_fuses(cols)) {
    const unsigned blocks = rw::layernorm_fused_grid(rows);
    F partial = poison(2 * blocks * cols);
    emu::launch(blocks, rw::kRowThreads, 0, rw::layernorm_backward_fused_kernel<DOut>, din,
                partial.data(), dout, in, weight, mean, rstd, residual, rows, cols);
    column_sums_accumulate<2>(
        {dweight, dbias}, rw::LayerNormBlockPartials{partial.data(), blocks, cols}, blocks, cols);
    return;
  }
  emu::launch(rw::layernorm_grid(rows), rw::kRowThreads, 0, rw::layernorm_din_kernel<DOut>, din,
              dout, in, weight, mean, rstd, residual, rows, cols);
  column_sums_accumulate<2>({dweight, dbias},
                            rw::LayerNormParamTerms<DOut>{dout, in, mean, rstd, cols}, rows, cols);
}

// ---- LayerNorm ------------------------------------------------------------------------------

struct Shape2 {
  i64 rows, cols;
};
void PrintTo(const Shape2& s, std::ostream* os) {
  *os << s.rows << " x " << s.cols;
}

class EmulatedLayerNorm : public ::testing::TestWithParam<Shape2> {};

// Inputs with a row-dependent offset (|mean| well above the spread in some rows).
F layernorm_input(i64 rows, i64 cols, std::uint32_t seed) {
  F x = random_floats(rows * cols, seed, -2.0f, 2.0f);
  for (i64 r = 0; r < rows; ++r)
    for (i64 c = 0; c < cols; ++c) x[r * cols + c] += static_cast<float>(r % 5) * 3.0f;
  return x;
}

TEST_P(EmulatedLayerNorm, F32EqualsTheCpuKernels) {
  const auto [rows, cols] = GetParam();
  const i64 n = rows * cols;
  const F x = layernorm_input(rows, cols, 1), w = random_floats(cols, 2, 0.5f, 1.5f),
          b = random_floats(cols, 3), dy = random_floats(n, 4), res = random_floats(n, 5),
          dw0 = random_floats(cols, 6), db0 = random_floats(cols, 7);
  const float eps = 1e-5f;
  F y(n), mean(rows), rstd(rows);
  cpu::layernorm_forward<float>(y.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(),
                                rows, cols, eps);
  F ky = poison(n), kmean = poison(rows), krstd = poison(rows);
  layernorm_forward<float>(ky.data(), kmean.data(), krstd.data(), x.data(), w.data(), b.data(),
                           rows, cols, eps);
  EXPECT_LE(max_rel_error(ky, y), kTol);
  EXPECT_LE(max_rel_error(kmean, mean), kTol);
  EXPECT_LE(max_rel_error(krstd, rstd), kTol);

  for (const bool with_residual : {false, true}) {
    const float* residual = with_residual ? res.data() : nullptr;
    F dx(n), dw = dw0, db = db0;
    cpu::layernorm_backward<float>(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(),
                                   mean.data(), rstd.data(), rows, cols, residual);
    F kdx = poison(n), kdw = dw0, kdb = db0;  // the parameter gradients accumulate
    layernorm_backward<float>(kdx.data(), kdw.data(), kdb.data(), dy.data(), x.data(), w.data(),
                              mean.data(), rstd.data(), rows, cols, residual);
    EXPECT_LE(max_rel_error(kdx, dx), kTol) << "residual " << with_residual;
    EXPECT_LE(max_rel_error(kdw, dw), kTol) << "residual " << with_residual;
    EXPECT_LE(max_rel_error(kdb, db), kTol) << "residual " << with_residual;
  }
}

// bf16 activations: a bf16 output (forward) and a bf16 output gradient (backward), against the
// CPU op on bf16 tensors.
TEST_P(EmulatedLayerNorm, Bf16EqualsTheCpuOp) {
  const Bf16Products bf16_products;
  const auto [rows, cols] = GetParam();
  const i64 n = rows * cols;
  const F x = layernorm_input(rows, cols, 11), w = random_floats(cols, 12, 0.5f, 1.5f),
          b = random_floats(cols, 13), res = random_floats(n, 15), dw0 = random_floats(cols, 16),
          db0 = random_floats(cols, 17);
  const Bits dy = to_bf16(random_floats(n, 14));
  const Tensor tx = tensor(x, {rows, cols}), tw = tensor(w, {cols}), tb = tensor(b, {cols});
  Tensor y, mean, rstd;
  ops::layernorm_forward(y, mean, rstd, tx, tw, tb, 1e-5, DType::bf16);
  ASSERT_EQ(y.dtype(), DType::bf16);
  Bits ky = poison_bf16(n);
  F kmean = poison(rows), krstd = poison(rows);
  layernorm_forward<bf16>(ky.data(), kmean.data(), krstd.data(), x.data(), w.data(), b.data(), rows,
                          cols, 1e-5f);
  EXPECT_LE(max_rel_error(widen(ky), values(y)), 1e-2);
  EXPECT_LE(max_rel_error(kmean, values(mean)), kTol);
  EXPECT_LE(max_rel_error(krstd, values(rstd)), kTol);

  const F m = values(mean), s = values(rstd);
  const Tensor tres = tensor(res, {rows, cols});
  for (const bool with_residual : {false, true}) {
    Tensor dx, dw = tensor(dw0, {cols}), db = tensor(db0, {cols});
    ops::layernorm_backward(dx, dw, db, tensor(dy, {rows, cols}), tx, tw, mean, rstd,
                            with_residual ? &tres : nullptr);
    F kdx = poison(n), kdw = dw0, kdb = db0;
    layernorm_backward<bf16>(kdx.data(), kdw.data(), kdb.data(), dy.data(), x.data(), w.data(),
                             m.data(), s.data(), rows, cols, with_residual ? res.data() : nullptr);
    // f32 results of bf16 values (the CPU widens dy for its f32 kernel): rounding only.
    EXPECT_LE(max_rel_error(kdx, values(dx)), kTol) << "residual " << with_residual;
    EXPECT_LE(max_rel_error(kdw, values(dw)), kTol) << "residual " << with_residual;
    EXPECT_LE(max_rel_error(kdb, values(db)), kTol) << "residual " << with_residual;
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, EmulatedLayerNorm,
                         ::testing::Values(Shape2{300, 70},  // two row chunks, a ragged tile
                                           Shape2{7, 300},   // rows wider than the block; fewer
                                                             // rows than a block's warps
                                           Shape2{5, 7},     // narrower than a warp
                                           Shape2{3, 256}, Shape2{1, 1},
                                           Shape2{45, 768},    // ViT's width; a ragged block
                                           Shape2{33, 1024},   // the widest fused rows
                                           Shape2{9, 1025}));  // the unfused kernels

// ---- softmax --------------------------------------------------------------------------------

TEST(EmulatedRowKernels, SoftmaxForwardBackward) {
  for (const Shape2 s : {Shape2{6, 300}, Shape2{4, 33}, Shape2{3, 5}, Shape2{2, 1}}) {
    const i64 n = s.rows * s.cols;
    const F x = random_floats(n, 21, -4.0f, 4.0f), dy = random_floats(n, 22);
    F y(n), dx(n);
    cpu::softmax_forward<float>(y.data(), x.data(), s.rows, s.cols);
    cpu::softmax_backward<float>(dx.data(), dy.data(), y.data(), s.rows, s.cols);
    F ky = poison(n), kdx = poison(n);
    emu::launch(rw::row_grid(s.rows), rw::kRowThreads, 0, rw::softmax_forward_kernel, ky.data(),
                x.data(), s.cols);
    emu::launch(rw::row_grid(s.rows), rw::kRowThreads, 0, rw::softmax_backward_kernel, kdx.data(),
                dy.data(), y.data(), s.cols);
    EXPECT_LE(max_rel_error(ky, y), kTol) << s.rows << " x " << s.cols;
    EXPECT_LE(max_rel_error(kdx, dx), kTol) << s.rows << " x " << s.cols;
  }
}

// ---- cross entropy --------------------------------------------------------------------------

TEST(EmulatedRowKernels, CrossEntropyForwardBackward) {
  const std::int32_t ignore = -100;
  for (const Shape2 s : {Shape2{6, 300}, Shape2{5, 37}, Shape2{3, 3}})
    for (const float eps : {0.0f, 0.1f}) {
      const i64 N = s.rows, V = s.cols;
      const F logits = random_floats(N * V, 31, -5.0f, 5.0f);
      std::vector<std::int32_t> targets(N);
      for (i64 r = 0; r < N; ++r) targets[r] = static_cast<std::int32_t>((r * 7 + 2) % V);
      targets[1] = ignore;
      targets[N - 1] = static_cast<std::int32_t>(V - 1);  // the last column
      F loss(N), lse(N), dl(N * V);
      cpu::cross_entropy_forward<float>(loss.data(), lse.data(), logits.data(), targets.data(), N,
                                        V, eps, ignore);
      cpu::cross_entropy_backward<float>(dl.data(), logits.data(), lse.data(), targets.data(), N, V,
                                         eps, ignore, 0.25f);
      F kloss = poison(N), klse = poison(N), kdl = poison(N * V);
      emu::launch(rw::row_grid(N), rw::kRowThreads, 0, rw::cross_entropy_forward_kernel,
                  kloss.data(), klse.data(), logits.data(), targets.data(), V, eps, ignore);
      // cross_entropy_backward's constants, as rows.cu forms them.
      const float smooth = eps / static_cast<float>(V), hit = 1.0f - eps;
      emu::launch(rw::row_grid(N), rw::kRowThreads, 0, rw::cross_entropy_backward_kernel,
                  kdl.data(), logits.data(), static_cast<const float*>(lse.data()), targets.data(),
                  V, smooth, hit, ignore, 0.25f);
      EXPECT_LE(max_rel_error(kloss, loss), kTol) << N << " x " << V << " eps " << eps;
      EXPECT_LE(max_rel_error(klse, lse), kTol) << N << " x " << V << " eps " << eps;
      EXPECT_LE(max_rel_error(kdl, dl), kTol) << N << " x " << V << " eps " << eps;
    }
}

// ---- argmax ---------------------------------------------------------------------------------

// Equal maxima (the first wins, wherever the threads holding them sit), maxima in the first and
// last columns, all -inf rows (column 0), rows wider than the block and narrower than a warp.
TEST(EmulatedRowKernels, ArgmaxRows) {
  for (const Shape2 s : {Shape2{8, 700}, Shape2{6, 37}, Shape2{3, 5}, Shape2{2, 1}}) {
    const i64 N = s.rows, V = s.cols;
    F x = random_floats(N * V, 41, -3.0f, 3.0f);
    for (F::value_type& v : x) v = std::round(v);  // many equal values per row
    x[0] = 9.0f;                                   // row 0: the first column
    if (N > 1) x[2 * V - 1] = 9.0f;                // row 1: the last column
    if (N > 2)
      for (i64 v = 0; v < V; ++v) x[2 * V + v] = -INFINITY;  // row 2: no finite value
    if (N > 3 && V > 300) x[3 * V + 5] = x[3 * V + 260] = x[3 * V + 600] = 9.0f;  // ties
    std::vector<std::int32_t> want(N), got(N, -1);
    cpu::argmax_rows<float>(want.data(), x.data(), N, V);
    emu::launch(rw::row_grid(N), rw::kRowThreads, 0, rw::argmax_rows_kernel, got.data(), x.data(),
                V);
    EXPECT_EQ(got, want) << N << " x " << V;
    if (N > 3 && V > 300) {
      EXPECT_EQ(want[3], 5);
    }
  }
}

}  // namespace
}  // namespace tr
