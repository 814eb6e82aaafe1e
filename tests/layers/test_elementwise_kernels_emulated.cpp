// The CUDA elementwise kernels (layers/cuda/elementwise_kernels.cuh: bias add/fill and the bias
// gradient through the column sums, add, scale, GELU/ReLU forward and backward, dropout masks
// and their application, AdamW/SGD, the bf16 conversions, the sum of squares' partials),
// compiled for the host and run under tests/common/cuda_emulation.h with the launches'
// geometry, against the CPU kernels (layers/cpu/kernels.h; fp32 within 1e-5 relative, masks
// and conversions bit for bit) and, for the bf16 storage variants, against the CPU ops on bf16
// tensors (layers/ops.h, under bf16 products: 1e-2). Sizes are not multiples of 4, 32 or a
// block; the sum of squares wraps its fixed grid; the dropout mask starts mid Philox block.
// Overwritten outputs start as NaN.
#include "common/cuda_emulation.h"
// (the emulation first: the kernel headers compile against it)
#include <gtest/gtest.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "common/emulated_column_sums.h"
#include "common/emulated_kernels.h"
#include "layers/cpu/kernels.h"
#include "layers/cuda/elementwise_kernels.cuh"
#include "layers/ops.h"

namespace tr {
namespace {

using namespace emu_test;
namespace ew = cuda::elementwise;
using cuda::bf16;
using Mask = std::vector<std::uint8_t>;

constexpr double kTol = 1e-5;

// elementwise.cu's TR_LAUNCH: a grid-stride loop over n.
template <typename Kernel, typename... Args>
void launch_n(i64 n, Kernel kernel, Args... args) {
  if (n > 0) emu::launch(cuda::grid_for(n), cuda::kThreads, 0, kernel, args...);
}

Mask random_mask(i64 n, double p, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::bernoulli_distribution kept(1.0 - p);
  Mask m(static_cast<std::size_t>(n));
  for (auto& x : m) x = kept(rng);
  return m;
}

Tensor mask_tensor(const Mask& m) {
  Tensor t = Tensor::empty({static_cast<i64>(m.size())}, DType::u8);
  std::copy(m.begin(), m.end(), t.data<std::uint8_t>());
  return t;
}

TEST(EmulatedElementwiseKernels, BiasAndSums) {
  const i64 rows = 300, cols = 45, n = rows * cols;  // two 256-row chunks, a ragged tile
  const F x = random_floats(n, 1), bias = random_floats(cols, 2), dy = random_floats(n, 3),
          db0 = random_floats(cols, 4);
  F ref(n), got = poison(n);
  cpu::bias_add<float>(ref.data(), x.data(), bias.data(), rows, cols);
  emu::launch(cuda::grid_for_rows(rows), cuda::kThreads, 0, ew::bias_add_kernel, got.data(),
              x.data(), bias.data(), rows, cols);
  EXPECT_LE(max_rel_error(got, ref), kTol) << "bias_add";
  cpu::bias_fill<float>(ref.data(), bias.data(), rows, cols);
  got = poison(n);
  emu::launch(cuda::grid_for_rows(rows), cuda::kThreads, 0, ew::bias_fill_kernel, got.data(),
              bias.data(), rows, cols);
  EXPECT_LE(max_rel_error(got, ref), kTol) << "bias_fill";
  F db = db0, kdb = db0;
  cpu::bias_backward_accumulate<float>(db.data(), dy.data(), rows, cols);
  column_sums_accumulate<1>({kdb.data()}, ew::BiasTerms<float>{dy.data(), cols}, rows, cols);
  EXPECT_LE(max_rel_error(kdb, db), kTol) << "bias_backward_accumulate";
}

TEST(EmulatedElementwiseKernels, AddAndScale) {
  const i64 n = 1001;
  const F a = random_floats(n, 5), b = random_floats(n, 6);
  F ref(n), got = poison(n);
  cpu::add<float>(ref.data(), a.data(), b.data(), n);
  launch_n(n, ew::add_kernel<float>, got.data(), a.data(), b.data(), n);
  EXPECT_LE(max_rel_error(got, ref), kTol) << "add";
  ref = a;
  got = a;
  cpu::add_accumulate<float>(ref.data(), b.data(), n);
  launch_n(n, ew::add_accumulate_kernel, got.data(), b.data(), n);
  EXPECT_LE(max_rel_error(got, ref), kTol) << "add_accumulate";
  got = poison(n);
  cpu::scale<float>(ref.data(), a.data(), -0.75f, n);
  launch_n(n, ew::scale_kernel, got.data(), a.data(), -0.75f, n);
  EXPECT_LE(max_rel_error(got, ref), kTol) << "scale";
}

TEST(EmulatedElementwiseKernels, Activations) {
  const i64 n = 1003;
  const F x = random_floats(n, 7, -4.0f, 4.0f), dy = random_floats(n, 8);
  F ref(n), got = poison(n);
  cpu::gelu_forward<float>(ref.data(), x.data(), n);
  launch_n(n, ew::gelu_forward_kernel<float>, got.data(), x.data(), n);
  EXPECT_LE(max_rel_error(got, ref), kTol) << "gelu_forward";
  got = poison(n);
  cpu::gelu_backward<float>(ref.data(), dy.data(), x.data(), n);
  launch_n(n, ew::gelu_backward_kernel<float>, got.data(), dy.data(), x.data(), n);
  EXPECT_LE(max_rel_error(got, ref), kTol) << "gelu_backward";
  got = poison(n);
  cpu::gelu_tanh_forward<float>(ref.data(), x.data(), n);
  launch_n(n, ew::gelu_forward_kernel<float, true>, got.data(), x.data(), n);
  EXPECT_LE(max_rel_error(got, ref), kTol) << "gelu_tanh_forward";
  got = poison(n);
  cpu::gelu_tanh_backward<float>(ref.data(), dy.data(), x.data(), n);
  launch_n(n, ew::gelu_backward_kernel<float, true>, got.data(), dy.data(), x.data(), n);
  EXPECT_LE(max_rel_error(got, ref), kTol) << "gelu_tanh_backward";
  got = poison(n);
  cpu::relu_forward<float>(ref.data(), x.data(), n);
  launch_n(n, ew::relu_forward_kernel<float>, got.data(), x.data(), n);
  EXPECT_LE(max_rel_error(got, ref), kTol) << "relu_forward";
  got = poison(n);
  cpu::relu_backward<float>(ref.data(), dy.data(), x.data(), n);
  launch_n(n, ew::relu_backward_kernel<float>, got.data(), dy.data(), x.data(), n);
  EXPECT_LE(max_rel_error(got, ref), kTol) << "relu_backward";
}

TEST(EmulatedElementwiseKernels, DropoutMasks) {
  const float p = 0.3f;
  const std::uint64_t seed = 1234, stream = 7;
  // Offsets inside a Philox block (the first block partly used) and lengths ending inside one.
  for (const std::uint64_t offset : {std::uint64_t{0}, std::uint64_t{6}, std::uint64_t{1} << 33})
    for (const i64 n : {i64{1}, i64{5}, i64{1030}}) {
      Mask ref(n), got(n, 0xAB);
      cpu::dropout_mask(ref.data(), n, p, seed, stream, offset);
      // dropout_mask's launch: one thread per Philox block of the range.
      const std::uint64_t first = offset >> 2,
                          last = (offset + static_cast<std::uint64_t>(n) - 1) >> 2;
      const i64 blocks = static_cast<i64>(last - first + 1);
      launch_n(blocks, ew::dropout_mask_kernel, got.data(), n, cpu::dropout_keep_threshold(p), seed,
               stream, offset, first, blocks);
      EXPECT_EQ(got, ref) << "offset " << offset << " n " << n;
    }
  // The strided layout of ops::dropout_mask: [2, 3, K] with a stride per leading dimension.
  // The kernel takes a row's Philox blocks four at a time, four words each: rows that start inside
  // a block (offset 5 or 3), on a block's first word (offset 4 or 0), rows shorter than a block;
  // rows of whole aligned blocks (offset 0, K 64 or 48: four blocks, 16 bytes, at a time; K 200
  // ends with a run of two blocks, K 197 inside a block, offset 8 with unaligned rows).
  const std::vector<std::uint64_t> strides{1000, 100};
  for (const auto& [offset, K] : {std::pair<std::uint64_t, i64>{5, 37},
                                  {4, 37},
                                  {0, 1},
                                  {3, 2},
                                  {7, 64},
                                  {1, 4},
                                  {0, 64},
                                  {0, 48},
                                  {0, 200},
                                  {8, 197},
                                  {2, 197}}) {
    const Shape shape{2, 3, K};
    Tensor keep;
    ops::dropout_mask(keep, shape, p, seed, stream, offset, strides);
    cuda::DropoutLayout layout;
    layout.n = 2;
    for (int j = 0; j < 2; ++j) {
      layout.dims[j] = shape[j];
      layout.strides[j] = strides[j];
    }
    const i64 rows = 6;
    Mask got(rows * K, 0xAB);
    launch_n(ew::dropout_strided_threads(rows, K), ew::dropout_mask_strided_kernel, got.data(),
             rows, K, layout, cpu::dropout_keep_threshold(p), seed, stream, offset);
    EXPECT_EQ(got, Mask(keep.data<std::uint8_t>(), keep.data<std::uint8_t>() + keep.numel()))
        << "offset " << offset << " K " << K;
  }
}

TEST(EmulatedElementwiseKernels, DropoutApplyAndAdd) {
  const i64 n = 777;
  const double p = 0.25;
  const float scale = static_cast<float>(1.0 / (1.0 - p));
  const F x = random_floats(n, 9), skip = random_floats(n, 10);
  const Mask keep = random_mask(n, p, 11);
  F ref(n), got = poison(n);
  cpu::dropout_apply<float>(ref.data(), x.data(), keep.data(), scale, n);
  launch_n(n, ew::dropout_apply_kernel<float>, got.data(), x.data(), keep.data(), scale, n);
  EXPECT_LE(max_rel_error(got, ref), kTol) << "dropout_apply";
  got = poison(n);
  cpu::dropout_add<float>(ref.data(), skip.data(), x.data(), keep.data(), scale, n);
  launch_n(n, ew::dropout_add_kernel<float>, got.data(), skip.data(), x.data(), keep.data(), scale,
           n);
  EXPECT_LE(max_rel_error(got, ref), kTol) << "dropout_add";
}

TEST(EmulatedElementwiseKernels, OptimizerUpdates) {
  const i64 n = 517;
  const F p0 = random_floats(n, 12), g = random_floats(n, 13),
          m0 = random_floats(n, 14, -0.1f, 0.1f), v0 = random_floats(n, 15, 0.0f, 0.01f);
  for (const i64 step : {i64{1}, i64{7}}) {
    F p = p0, m = m0, v = v0, kp = p0, km = m0, kv = v0;
    cpu::adamw_update<float>(p.data(), g.data(), m.data(), v.data(), n, 1e-3f, 0.9f, 0.999f, 1e-8f,
                             0.01f, step);
    launch_n(n, ew::adamw_kernel, kp.data(), g.data(), km.data(), kv.data(), n,
             cpu::adamw_constants(1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, step));
    EXPECT_LE(max_rel_error(kp, p), kTol) << "adamw step " << step;
    EXPECT_LE(max_rel_error(km, m), kTol) << "adamw step " << step;
    EXPECT_LE(max_rel_error(kv, v), kTol) << "adamw step " << step;
  }
  for (const float momentum : {0.0f, 0.9f})
    for (const bool first : {true, false}) {
      F p = p0, buf = m0, kp = p0, kbuf = m0;
      cpu::sgd_update<float>(p.data(), g.data(), buf.data(), n, 0.1f, momentum, 0.01f, first);
      // sgd_update's launch: no buffer without momentum, the step's sign folded in.
      launch_n(n, ew::sgd_kernel, kp.data(), g.data(), momentum == 0.0f ? nullptr : kbuf.data(), n,
               -0.1f, momentum, 0.01f, first);
      EXPECT_LE(max_rel_error(kp, p), kTol) << "sgd momentum " << momentum << " first " << first;
      EXPECT_LE(max_rel_error(kbuf, buf), kTol)
          << "sgd momentum " << momentum << " first " << first;
    }
}

TEST(EmulatedElementwiseKernels, Bf16Conversions) {
  const i64 n = 333;
  F x = random_floats(n, 16, -100.0f, 100.0f);
  x[0] = 1.0f + 0x1p-8f;  // a tie: to even
  x[1] = 3.4e38f;         // rounds to infinity
  x[2] = 1e-40f;          // subnormal
  Bits ref(n), got = poison_bf16(n);
  cpu::f32_to_bf16(ref.data(), x.data(), n);
  launch_n(n, ew::f32_to_bf16_kernel, reinterpret_cast<__nv_bfloat16*>(got.data()), x.data(), n);
  EXPECT_EQ(got, ref);
  F wide(n), kwide = poison(n);
  cpu::bf16_to_f32(wide.data(), ref.data(), n);
  launch_n(n, ew::bf16_to_f32_kernel, kwide.data(),
           reinterpret_cast<const __nv_bfloat16*>(ref.data()), n);
  EXPECT_EQ(kwide, wide);
}

TEST(EmulatedElementwiseKernels, SumOfSquares) {
  // More elements than the fixed grid's threads: each thread takes two or three.
  for (const i64 n : {i64{1}, i64{1000}, i64{70001}, i64{140000}}) {
    const F x = random_floats(n, 17, -3.0f, 3.0f);
    const double ref = cpu::sum_squares<float>(x.data(), n);
    // sum_squares_each: kSumBlocks partials, added on the host in block order.
    std::vector<double> partial(ew::kSumBlocks, NAN);
    emu::launch(ew::kSumBlocks, cuda::kThreads, 0, ew::sum_squares_kernel, partial.data(), x.data(),
                n);
    double got = 0;
    for (const double s : partial) got += s;
    EXPECT_NEAR(got, ref, 1e-12 * ref) << n << " elements";
  }
}

// ---- bf16 storage: against the CPU ops on bf16 tensors ----------------------------------------

TEST(EmulatedElementwiseKernels, Bf16VectorThreadsCoverGroupsThenTail) {
  alignas(16) static bf16 buffer[16];
  const bf16 *aligned = buffer, *unaligned = buffer + 1;
  EXPECT_EQ(ew::bf16_vector_threads(1073, aligned, aligned), 134);  // 134 groups, 1 left
  EXPECT_EQ(ew::bf16_vector_threads(20, aligned, aligned), 4);      // 2 groups, 4 left
  EXPECT_EQ(ew::bf16_vector_threads(1073, aligned, unaligned), 1073);
  EXPECT_EQ(ew::bf16_vector_threads(1073, aligned, aligned, unaligned), 1073);
  EXPECT_EQ(ew::bf16_vector_threads(0, aligned, aligned), 0);
}

TEST(EmulatedElementwiseKernels, Bf16Variants) {
  const Bf16Products bf16_products;
  const i64 rows = 37, cols = 29, n = rows * cols;
  const Bits x = to_bf16(random_floats(n, 21, -4.0f, 4.0f)), dy = to_bf16(random_floats(n, 22));
  const Tensor tx = tensor(x, {rows, cols}), tdy = tensor(dy, {rows, cols});
  for (const auto act :
       {ops::Activation::gelu, ops::Activation::gelu_tanh, ops::Activation::relu}) {
    const bool gelu = act != ops::Activation::relu;
    const char* name = act == ops::Activation::gelu ? "gelu" : gelu ? "gelu_tanh" : "relu";
    Tensor y, dx;
    ops::activation_forward(y, tx, act);
    ops::activation_backward(dx, tdy, tx, act);
    ASSERT_EQ(y.dtype(), DType::bf16);
    ASSERT_EQ(dx.dtype(), DType::bf16);
    Bits ky = poison_bf16(n), kdx = poison_bf16(n);
    if (act == ops::Activation::gelu) {
      // Launched as elementwise.cu does: a thread per group of eight (and per tail element).
      launch_n(ew::bf16_vector_threads(n, ky.data(), x.data()), ew::gelu_forward_kernel<bf16>,
               ky.data(), x.data(), n);
      launch_n(ew::bf16_vector_threads(n, kdx.data(), dy.data(), x.data()),
               ew::gelu_backward_kernel<bf16>, kdx.data(), dy.data(), x.data(), n);
    } else if (gelu) {
      launch_n(ew::bf16_vector_threads(n, ky.data(), x.data()), ew::gelu_forward_kernel<bf16, true>,
               ky.data(), x.data(), n);
      launch_n(ew::bf16_vector_threads(n, kdx.data(), dy.data(), x.data()),
               ew::gelu_backward_kernel<bf16, true>, kdx.data(), dy.data(), x.data(), n);
    } else {
      launch_n(n, ew::relu_forward_kernel<bf16>, ky.data(), x.data(), n);
      launch_n(n, ew::relu_backward_kernel<bf16>, kdx.data(), dy.data(), x.data(), n);
    }
    EXPECT_LE(max_rel_error(widen(ky), values(y)), 1e-2) << name;
    EXPECT_LE(max_rel_error(widen(kdx), values(dx)), 1e-2) << name;
  }

  // A bf16 branch added to the f32 stream, with and without dropout; a bf16 tensor's dropout.
  const double p = 0.2;
  const float scale = static_cast<float>(1.0 / (1.0 - p));
  const F a = random_floats(n, 23);
  const Tensor ta = tensor(a, {rows, cols});
  const Mask keep = random_mask(n, p, 24);
  Tensor sum, added, dropped;
  ops::add(sum, ta, tdy);
  ops::dropout_add(added, ta, tdy, mask_tensor(keep), p);
  ops::dropout_apply(dropped, tdy, mask_tensor(keep), p);
  ASSERT_EQ(sum.dtype(), DType::f32);
  ASSERT_EQ(dropped.dtype(), DType::bf16);
  F ksum = poison(n), kadded = poison(n);
  Bits kdropped = poison_bf16(n);
  launch_n(n, ew::add_kernel<bf16>, ksum.data(), a.data(), dy.data(), n);
  launch_n(n, ew::dropout_add_kernel<bf16>, kadded.data(), a.data(), dy.data(), keep.data(), scale,
           n);
  launch_n(n, ew::dropout_apply_kernel<bf16>, kdropped.data(), dy.data(), keep.data(), scale, n);
  EXPECT_LE(max_rel_error(ksum, values(sum)), 1e-2) << "add";
  EXPECT_LE(max_rel_error(kadded, values(added)), 1e-2) << "dropout_add";
  EXPECT_LE(max_rel_error(widen(kdropped), values(dropped)), 1e-2) << "dropout_apply";

  // The bias gradient of a bf16 output gradient (a linear layer's backward).
  const i64 in = 6;
  const F db0 = random_floats(cols, 25);
  Tensor dweight = Tensor::zeros({cols, in}, DType::f32), dbias = tensor(db0, {cols});
  ops::linear_backward(nullptr, dweight, &dbias, tdy,
                       tensor(random_floats(rows * in, 26), {rows, in}),
                       tensor(random_floats(cols * in, 27), {cols, in}));
  F kdb = db0;
  column_sums_accumulate<1>({kdb.data()}, ew::BiasTerms<bf16>{dy.data(), cols}, rows, cols);
  EXPECT_LE(max_rel_error(kdb, values(dbias)), 1e-2) << "bias_backward_accumulate";
}

}  // namespace
}  // namespace tr
