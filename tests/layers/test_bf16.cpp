// bf16 on the CPU (train.precision: bf16): the conversions round to nearest even; under bf16
// products every fp32 GEMM multiplies bf16-rounded operands; the ops take bf16 operands in any
// mix with f32, give their outputs the documented dtypes, and agree with the fp64 op on the
// same (bf16-representable) inputs to bf16 accuracy.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include "layers/cpu/bf16.h"
#include "layers/cpu/kernels.h"
#include "layers/ops.h"
#include "layers/precision.h"

namespace tr {
namespace {

// Turns bf16 products on for a scope.
struct Bf16Products {
  Bf16Products() { cpu::set_bf16_products(true); }
  ~Bf16Products() { cpu::set_bf16_products(false); }
};

std::uint16_t bits(float x) {
  return cpu::f32_to_bf16_bits(x);
}

TEST(Bf16, ConversionRoundsToNearestEven) {
  EXPECT_EQ(bits(1.0f), 0x3f80);
  EXPECT_EQ(bits(-2.0f), 0xc000);
  // bf16 keeps 7 mantissa bits: 1 + 2^-8 is halfway between 1 and 1 + 2^-7 -> the even 1;
  // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 -> 1 + 2^-6.
  EXPECT_EQ(bits(1.0f + 0x1p-8f), 0x3f80);
  EXPECT_EQ(bits(1.0f + 3 * 0x1p-8f), 0x3f82);
  EXPECT_EQ(bits(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);  // above halfway: up
  EXPECT_EQ(bits(-(1.0f + 0x1p-8f + 0x1p-20f)), 0xbf81);
  EXPECT_EQ(bits(std::numeric_limits<float>::max()), 0x7f80);  // rounds up to infinity
  EXPECT_EQ(bits(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_TRUE(std::isnan(cpu::bf16_bits_to_f32(bits(std::numeric_limits<float>::quiet_NaN()))));
  // A NaN whose payload sits in the dropped half stays a NaN (not infinity).
  EXPECT_TRUE(std::isnan(cpu::round_to_bf16(std::bit_cast<float>(0x7f800001u))));
  EXPECT_EQ(cpu::bf16_bits_to_f32(0x3f81), 1.0f + 0x1p-7f);
}

TEST(Bf16, TensorCopiesConvertBothWays) {
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  Tensor f = Tensor::empty({5, 7}, DType::f32);
  for (std::int64_t i = 0; i < f.numel(); ++i) f.data<float>()[i] = dist(rng);
  Tensor b = Tensor::empty({5, 7}, DType::bf16);
  b.copy_from(f);
  Tensor back = Tensor::empty({5, 7}, DType::f32);
  back.copy_from(b);
  for (std::int64_t i = 0; i < f.numel(); ++i) {
    EXPECT_EQ(b.data<BFloat16>()[i].bits, bits(f.data<float>()[i]));
    EXPECT_EQ(back.data<float>()[i], cpu::round_to_bf16(f.data<float>()[i]));
  }
}

// Random floats of varied magnitude, most of them not representable in bf16.
std::vector<float> random_floats(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// C = op(A) op(B) in fp64 from the given operand values.
std::vector<double> product(bool ta, bool tb, std::int64_t M, std::int64_t N, std::int64_t K,
                            const std::vector<double>& A, std::int64_t lda,
                            const std::vector<double>& B, std::int64_t ldb) {
  std::vector<double> C(static_cast<std::size_t>(M * N), 0.0);
  for (std::int64_t m = 0; m < M; ++m)
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t k = 0; k < K; ++k)
        C[m * N + n] += A[ta ? k * lda + m : m * lda + k] * B[tb ? n * ldb + k : k * ldb + n];
  return C;
}

TEST(Bf16, ProductsRoundTheOperandsOfEveryFp32Gemm) {
  const std::int64_t M = 9, N = 11, K = 37;
  for (int t = 0; t < 4; ++t) {
    const bool ta = t & 1, tb = t & 2;
    // Leading dimensions wider than the rows: the rounded copies must honour them.
    const std::int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 2;
    const std::vector<float> A = random_floats(static_cast<std::size_t>((ta ? K : M) * lda), 7 + t);
    const std::vector<float> B = random_floats(static_cast<std::size_t>((tb ? N : K) * ldb), 9 + t);
    std::vector<double> Ad(A.begin(), A.end()), Bd(B.begin(), B.end()), Ar(A.size()), Br(B.size());
    for (std::size_t i = 0; i < A.size(); ++i) Ar[i] = cpu::round_to_bf16(A[i]);
    for (std::size_t i = 0; i < B.size(); ++i) Br[i] = cpu::round_to_bf16(B[i]);
    const std::vector<double> exact = product(ta, tb, M, N, K, Ad, lda, Bd, ldb);
    const std::vector<double> rounded = product(ta, tb, M, N, K, Ar, lda, Br, ldb);
    std::vector<float> C(static_cast<std::size_t>(M * N));
    {
      Bf16Products on;
      cpu::gemm<float>(ta, tb, M, N, K, 1.0f, A.data(), lda, B.data(), ldb, 0.0f, C.data(), N);
    }
    double to_rounded = 0, to_exact = 0, scale = 0;
    for (std::size_t i = 0; i < C.size(); ++i) {
      to_rounded = std::max(to_rounded, std::abs(C[i] - rounded[i]));
      to_exact = std::max(to_exact, std::abs(C[i] - exact[i]));
      scale = std::max(scale, std::abs(exact[i]));
    }
    EXPECT_LT(to_rounded / scale, 1e-6) << "trans " << ta << tb;  // fp32 accumulation only
    EXPECT_GT(to_exact / scale, 1e-4) << "trans " << ta << tb;    // the operands were rounded
    // Off again: the exact fp32 product; and gemm<double> is never rounded.
    cpu::gemm<float>(ta, tb, M, N, K, 1.0f, A.data(), lda, B.data(), ldb, 0.0f, C.data(), N);
    std::vector<double> D(C.size());
    {
      Bf16Products on;
      cpu::gemm<double>(ta, tb, M, N, K, 1.0, Ad.data(), lda, Bd.data(), ldb, 0.0, D.data(), N);
    }
    for (std::size_t i = 0; i < C.size(); ++i) {
      EXPECT_NEAR(C[i], exact[i], 1e-5 * scale);
      EXPECT_NEAR(D[i], exact[i], 1e-12 * scale);
    }
  }
}

// ---- ops on bf16 operands ---------------------------------------------------------------

// A copy of `t` in `dtype` (f32 in between; exact for bf16-representable values).
Tensor as_dtype(const Tensor& t, DType dtype) {
  Tensor f32 = t;
  if (t.dtype() != DType::f32) {
    f32 = Tensor::empty(t.shape(), DType::f32);
    f32.copy_from(t);
  }
  if (dtype == DType::f32) return f32.clone();
  Tensor out = Tensor::empty(t.shape(), dtype);
  out.copy_from(f32);
  return out;
}

// A tensor of bf16-representable random values in `dtype` (bf16, f32 or f64).
Tensor random_tensor(const Shape& shape, DType dtype, std::uint64_t seed, float scale = 1.0f) {
  const std::vector<float> v = random_floats(static_cast<std::size_t>(shape_numel(shape)), seed);
  Tensor f = Tensor::empty(shape, DType::f32);
  for (std::int64_t i = 0; i < f.numel(); ++i)
    f.data<float>()[i] = cpu::round_to_bf16(scale * v[i]);
  return as_dtype(f, dtype);
}

// max |got - ref| / max |ref|, both widened to fp64.
double relative_error(const Tensor& got, const Tensor& ref) {
  const Tensor g = as_dtype(got, DType::f64), r = as_dtype(ref, DType::f64);
  EXPECT_EQ(g.shape(), r.shape());
  double diff = 0, mag = 0;
  for (std::int64_t i = 0; i < r.numel(); ++i) {
    diff = std::max(diff, std::abs(g.data<double>()[i] - r.data<double>()[i]));
    mag = std::max(mag, std::abs(r.data<double>()[i]));
  }
  return diff / std::max(mag, 1e-30);
}

// One bf16 rounding of the result (2^-9 relative) and fp32 arithmetic inside.
constexpr double kBf16Tol = 5e-3;

TEST(Bf16Ops, LinearForwardAndBackward) {
  Bf16Products on;
  const Tensor x = random_tensor({3, 4, 24}, DType::bf16, 1);
  const Tensor w = random_tensor({10, 24}, DType::f32, 2, 0.3f);
  const Tensor b = random_tensor({10}, DType::f32, 3);
  const Tensor x64 = as_dtype(x, DType::f64), w64 = as_dtype(w, DType::f64),
               b64 = as_dtype(b, DType::f64);
  Tensor y, y64;
  ops::linear_forward(y, x, w, b, DType::bf16);
  ops::linear_forward(y64, x64, w64, b64);
  EXPECT_EQ(y.dtype(), DType::bf16);
  EXPECT_LT(relative_error(y, y64), kBf16Tol);
  Tensor y32;
  ops::linear_forward(y32, x, w, b, DType::f32);  // a bf16 input may give an f32 output
  EXPECT_EQ(y32.dtype(), DType::f32);
  EXPECT_LT(relative_error(y32, y64), 1e-5);  // bf16-exact operands: fp32 accumulation only

  const Tensor dy = random_tensor(y.shape(), DType::bf16, 4);
  Tensor dx, dw = Tensor::zeros(w.shape(), DType::f32), db = Tensor::zeros(b.shape(), DType::f32);
  Tensor dx64, dw64 = Tensor::zeros(w.shape(), DType::f64),
               db64 = Tensor::zeros(b.shape(), DType::f64);
  ops::linear_backward(&dx, dw, &db, dy, x, w);
  ops::linear_backward(&dx64, dw64, &db64, as_dtype(dy, DType::f64), x64, w64);
  EXPECT_EQ(dx.dtype(), DType::bf16);  // the gradient of a bf16 activation
  EXPECT_LT(relative_error(dx, dx64), kBf16Tol);
  EXPECT_LT(relative_error(dw, dw64), 1e-5);  // parameter gradients: fp32, exact products
  EXPECT_LT(relative_error(db, db64), 1e-5);

  // Accumulating into a bf16 sum: the sum is rounded once more.
  Tensor sum = as_dtype(dx, DType::bf16), sum64 = as_dtype(dx, DType::f64);
  ops::linear_backward_accumulate(sum, dw, &db, dy, x, w);
  ops::linear_backward_accumulate(sum64, dw64, &db64, as_dtype(dy, DType::f64), x64, w64);
  EXPECT_EQ(sum.dtype(), DType::bf16);
  EXPECT_LT(relative_error(sum, sum64), kBf16Tol);
}

// The tanh GELU's fused linear ops (one cuBLASLt pass each on CUDA) in bf16 against the fp64
// product and GELU: y and its pre-activation, and a next layer's input gradient carried back
// through the GELU.
TEST(Bf16Ops, LinearGeluTanhForwardAndBackwardThroughIt) {
  Bf16Products on;
  const Tensor x = random_tensor({3, 4, 24}, DType::bf16, 1);
  const Tensor w1 = random_tensor({16, 24}, DType::f32, 2, 0.3f),
               b1 = random_tensor({16}, DType::f32, 3);
  const Tensor w2 = random_tensor({10, 16}, DType::f32, 4, 0.3f),
               b2 = random_tensor({10}, DType::f32, 5);
  const Tensor x64 = as_dtype(x, DType::f64), w1_64 = as_dtype(w1, DType::f64),
               b1_64 = as_dtype(b1, DType::f64), w2_64 = as_dtype(w2, DType::f64);
  Tensor a, pre, a64, pre64;
  ops::linear_gelu_tanh_forward(a, pre, x, w1, b1, DType::bf16);
  ops::linear_forward(pre64, x64, w1_64, b1_64);
  ops::activation_forward(a64, pre64, ops::Activation::gelu_tanh);
  EXPECT_EQ(a.dtype(), DType::bf16);
  EXPECT_EQ(pre.dtype(), DType::bf16);
  EXPECT_LT(relative_error(pre, pre64), kBf16Tol);
  EXPECT_LT(relative_error(a, a64), 2 * kBf16Tol);  // GELU of the rounded pre-activation

  const Tensor dy = random_tensor({3, 4, 10}, DType::bf16, 6);
  Tensor dh, dw = Tensor::zeros(w2.shape(), DType::f32), db = Tensor::zeros(b2.shape(), DType::f32);
  ops::linear_backward_through_gelu_tanh(dh, dw, &db, dy, a, w2, pre);
  Tensor da64, dh64, dw64 = Tensor::zeros(w2.shape(), DType::f64),
                     db64 = Tensor::zeros(b2.shape(), DType::f64);
  ops::linear_backward(&da64, dw64, &db64, as_dtype(dy, DType::f64), as_dtype(a, DType::f64),
                       w2_64);
  ops::activation_backward(dh64, da64, as_dtype(pre, DType::f64), ops::Activation::gelu_tanh);
  EXPECT_EQ(dh.dtype(), DType::bf16);
  EXPECT_LT(relative_error(dh, dh64), 2 * kBf16Tol);
  EXPECT_LT(relative_error(dw, dw64), 1e-5);
  EXPECT_LT(relative_error(db, db64), 1e-5);
}

TEST(Bf16Ops, LayerNormTakesF32ResidualAndGivesBf16) {
  const Tensor x = random_tensor({6, 32}, DType::f32, 5, 2.0f);
  const Tensor g = random_tensor({32}, DType::f32, 6), b = random_tensor({32}, DType::f32, 7);
  Tensor y, mean, rstd, y64, mean64, rstd64;
  ops::layernorm_forward(y, mean, rstd, x, g, b, 1e-5, DType::bf16);
  ops::layernorm_forward(y64, mean64, rstd64, as_dtype(x, DType::f64), as_dtype(g, DType::f64),
                         as_dtype(b, DType::f64), 1e-5);
  EXPECT_EQ(y.dtype(), DType::bf16);
  EXPECT_EQ(mean.dtype(), DType::f32);
  EXPECT_LT(relative_error(y, y64), kBf16Tol);
  EXPECT_LT(relative_error(rstd, rstd64), 1e-5);

  const Tensor dy = random_tensor(x.shape(), DType::bf16, 8);  // from a projection's backward
  const Tensor skip = random_tensor(x.shape(), DType::f32, 9);
  Tensor dx, dg = Tensor::zeros({32}, DType::f32), dbias = Tensor::zeros({32}, DType::f32);
  Tensor dx64, dg64 = Tensor::zeros({32}, DType::f64), db64 = Tensor::zeros({32}, DType::f64);
  ops::layernorm_backward(dx, dg, dbias, dy, x, g, mean, rstd, &skip);
  const Tensor skip64 = as_dtype(skip, DType::f64);
  ops::layernorm_backward(dx64, dg64, db64, as_dtype(dy, DType::f64), as_dtype(x, DType::f64),
                          as_dtype(g, DType::f64), mean64, rstd64, &skip64);
  EXPECT_EQ(dx.dtype(), DType::f32);  // the residual stream's gradient stays f32
  EXPECT_LT(relative_error(dx, dx64), 1e-5);
  EXPECT_LT(relative_error(dg, dg64), 1e-5);
}

TEST(Bf16Ops, ElementwiseDtypesAndValues) {
  const Shape shape{4, 50};
  const Tensor h = random_tensor(shape, DType::bf16, 10, 3.0f);
  const Tensor h64 = as_dtype(h, DType::f64);
  for (ops::Activation act :
       {ops::Activation::gelu, ops::Activation::gelu_tanh, ops::Activation::relu}) {
    Tensor a, a64;
    ops::activation_forward(a, h, act);
    ops::activation_forward(a64, h64, act);
    EXPECT_EQ(a.dtype(), DType::bf16);
    EXPECT_LT(relative_error(a, a64), kBf16Tol);
    const Tensor da = random_tensor(shape, DType::bf16, 11);
    Tensor dh, dh64;
    ops::activation_backward(dh, da, h, act, a);
    ops::activation_backward(dh64, as_dtype(da, DType::f64), h64, act, a64);
    EXPECT_EQ(dh.dtype(), DType::bf16);
    EXPECT_LT(relative_error(dh, dh64), kBf16Tol);
  }
  // The residual stream: f32 + bf16 is f32 (exact here: both are bf16 values of equal scale
  // and the f32 sum keeps every bit up to the exponent gap).
  const Tensor skip = random_tensor(shape, DType::f32, 12);
  Tensor sum;
  ops::add(sum, skip, h);
  EXPECT_EQ(sum.dtype(), DType::f32);
  Tensor sum64;
  ops::add(sum64, as_dtype(skip, DType::f64), h64);
  EXPECT_LT(relative_error(sum, sum64), 1e-7);
  Tensor keep = Tensor::empty(shape, DType::u8);
  for (std::int64_t i = 0; i < keep.numel(); ++i) keep.data<std::uint8_t>()[i] = i % 3 != 0;
  Tensor dropped, dropped64;
  ops::dropout_add(dropped, skip, h, keep, 0.25);
  ops::dropout_add(dropped64, as_dtype(skip, DType::f64), h64, keep, 0.25);
  EXPECT_EQ(dropped.dtype(), DType::f32);
  EXPECT_LT(relative_error(dropped, dropped64), 1e-6);
  Tensor masked;
  ops::dropout_apply(masked, sum, keep, 0.25);  // a bf16 branch's gradient from f32 is f32
  EXPECT_EQ(masked.dtype(), DType::f32);
  ops::dropout_apply(masked, h, keep, 0.25);
  EXPECT_EQ(masked.dtype(), DType::bf16);
  // Accumulating into a bf16 tensor, and a bias on one.
  Tensor acc = h.clone(), acc64 = h64.clone();
  ops::add_accumulate(acc, skip);
  ops::add_accumulate(acc64, as_dtype(skip, DType::f64));
  EXPECT_EQ(acc.dtype(), DType::bf16);
  EXPECT_LT(relative_error(acc, acc64), kBf16Tol);
  const Tensor bias = random_tensor({50}, DType::f32, 13);
  ops::bias_add_inplace(acc, bias);
  ops::bias_add_inplace(acc64, as_dtype(bias, DType::f64));
  EXPECT_LT(relative_error(acc, acc64), 2 * kBf16Tol);
}

TEST(Bf16Ops, AttentionForwardAndBackward) {
  Bf16Products on;  // probabilities and score gradients are rounded as product operands
  const std::int64_t B = 2, T = 5, S = 7, H = 2, d = 16;
  const Tensor q = random_tensor({B, T, d}, DType::bf16, 20),
               k = random_tensor({B, S, d}, DType::bf16, 21),
               v = random_tensor({B, S, d}, DType::bf16, 22);
  Tensor lens = Tensor::empty({B}, DType::i32);
  lens.data<std::int32_t>()[0] = 7;
  lens.data<std::int32_t>()[1] = 4;
  Tensor out, probs, out64, probs64;
  ops::attention_forward(out, probs, q, k, v, lens, Tensor(), 1.0, H, false, 0);
  const Tensor q64 = as_dtype(q, DType::f64), k64 = as_dtype(k, DType::f64),
               v64 = as_dtype(v, DType::f64);
  ops::attention_forward(out64, probs64, q64, k64, v64, lens, Tensor(), 1.0, H, false, 0);
  EXPECT_EQ(out.dtype(), DType::bf16);
  EXPECT_EQ(probs.dtype(), DType::f32);
  EXPECT_LT(relative_error(out, out64), 2 * kBf16Tol);
  EXPECT_LT(relative_error(probs, probs64), 1e-5);

  const Tensor dout = random_tensor(out.shape(), DType::bf16, 23);
  Tensor dq, dk, dv, scratch, dq64, dk64, dv64, scratch64;
  ops::attention_backward(dq, dk, dv, scratch, dout, probs, q, k, v, Tensor(), 1.0, H);
  ops::attention_backward(dq64, dk64, dv64, scratch64, as_dtype(dout, DType::f64), probs64, q64,
                          k64, v64, Tensor(), 1.0, H);
  for (const Tensor* g : {&dq, &dk, &dv}) EXPECT_EQ(g->dtype(), DType::bf16);
  EXPECT_LT(relative_error(dq, dq64), 2e-2);
  EXPECT_LT(relative_error(dk, dk64), 2e-2);
  EXPECT_LT(relative_error(dv, dv64), 2 * kBf16Tol);
}

TEST(Bf16Ops, BlockActivationDtypeFollowsTheSwitch) {
  EXPECT_EQ(block_activation_dtype(DType::f32), DType::f32);
  set_bf16_activations(true);
  EXPECT_EQ(block_activation_dtype(DType::f32), DType::bf16);
  EXPECT_EQ(block_activation_dtype(DType::bf16), DType::bf16);
  EXPECT_EQ(block_activation_dtype(DType::f64), DType::f64);
  set_bf16_activations(false);
  EXPECT_EQ(block_activation_dtype(DType::bf16), DType::f32);
}

}  // namespace
}  // namespace tr
