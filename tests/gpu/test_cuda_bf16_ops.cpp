// bf16 activations on CUDA (layers/precision.h): the ops of layers/ops.h with bf16 operands on
// device copies against the same ops on the host, both under bf16 products. Both round at the
// same points (operands of products, bf16 outputs), so they differ by summation order and at
// most one bf16 rounding step of an output (2^-8 relative): bound 1e-2 relative. The f32 <->
// bf16 conversions on the device equal the host's bit for bit (NaN aside: each side has its own
// quiet NaN pattern; none is converted here). Skips where no GPU.
#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <iterator>
#include <vector>

#include "gpu/cuda_test.h"
#include "layers/cpu/bf16.h"
#include "layers/cuda/kernels.h"
#include "layers/device.h"
#include "layers/device_ops.h"
#include "layers/ops.h"

namespace tr {
namespace {

using i64 = std::int64_t;

constexpr double kTol = 1e-2;

// A host tensor of `dtype` holding bf16-representable random values.
Tensor rnd(const Shape& shape, std::uint32_t seed, DType dtype = DType::bf16, float lo = -1,
           float hi = 1) {
  std::vector<float> v = gpu_test::random_floats(shape_numel(shape), seed, lo, hi);
  for (float& x : v) x = cpu::round_to_bf16(x);
  const Tensor f = gpu_test::host_tensor(v, shape);
  if (dtype == DType::f32) return f;
  Tensor t = Tensor::empty(shape, dtype);
  t.copy_from(f);
  return t;
}
using gpu_test::cu;
using gpu_test::values;
// The device result against the host one: same dtype and shape, values within `tol`.
double err(const Tensor& device, const Tensor& host) {
  EXPECT_EQ(device.device(), Device::cuda);
  EXPECT_EQ(device.dtype(), host.dtype());
  EXPECT_EQ(device.shape(), host.shape());
  return gpu_test::max_rel_error(values(device), values(host), 1.0);
}

using CudaBf16Ops = gpu_test::Bf16ProductsTest<>;

TEST_F(CudaBf16Ops, ConversionsEqualTheHosts) {
  std::vector<float> v = gpu_test::random_floats(1000, 3, -100, 100);
  // Exact ties (random values almost never are one), overflow, subnormals, zeros, infinities.
  const std::uint32_t special[] = {0x3F808000u, 0x3F818000u, 0xBF808000u, 0xBF818000u,
                                   0x7F7FFFFFu, 0xFF7FFFFFu, 0x00008001u, 0x00018000u,
                                   0x00000000u, 0x80000000u, 0x7F800000u, 0xFF800000u};
  for (std::size_t i = 0; i < std::size(special); ++i) v[i] = std::bit_cast<float>(special[i]);
  const Tensor f = gpu_test::host_tensor(v, {1000});
  Tensor hb = Tensor::empty({1000}, DType::bf16);
  hb.copy_from(f);
  Tensor db = Tensor::empty({1000}, DType::bf16, Device::cuda);
  db.copy_from(cu(f));
  const Tensor back = to_device(db, Device::cpu);
  for (i64 i = 0; i < 1000; ++i)
    ASSERT_EQ(back.data<BFloat16>()[i].bits, hb.data<BFloat16>()[i].bits) << v[i];
  Tensor wide = Tensor::empty({1000}, DType::f32, Device::cuda);
  wide.copy_from(db);
  const std::vector<float> w = gpu_test::to_host_vector<float>(wide);
  for (i64 i = 0; i < 1000; ++i) EXPECT_EQ(w[i], cpu::round_to_bf16(v[i]));
}

TEST_F(CudaBf16Ops, LinearWithBf16OperandsAndOutputs) {
  const Tensor w = rnd({24, 16}, 2, DType::f32), b = rnd({24}, 3, DType::f32);
  for (DType x_dtype : {DType::f32, DType::bf16})
    for (DType y_dtype : {DType::f32, DType::bf16})
      for (bool with_bias : {false, true}) {
        SCOPED_TRACE(std::string("x ") + dtype_name(x_dtype) + " y " + dtype_name(y_dtype) +
                     (with_bias ? " bias" : ""));
        const Tensor x = rnd({3, 5, 16}, 1, x_dtype), dy = rnd({3, 5, 24}, 4, y_dtype);
        const Tensor bias = with_bias ? b : Tensor();
        Tensor y, cy;
        ops::linear_forward(y, x, w, bias, y_dtype);
        ops::linear_forward(cy, cu(x), cu(w), cu(bias), y_dtype);
        EXPECT_LE(err(cy, y), kTol);
        Tensor dx, dw = rnd({24, 16}, 5, DType::f32), db = rnd({24}, 6, DType::f32);
        Tensor cdx, cdw = cu(dw), cdb = cu(db);
        ops::linear_backward(&dx, dw, with_bias ? &db : nullptr, dy, x, w);
        ops::linear_backward(&cdx, cdw, with_bias ? &cdb : nullptr, cu(dy), cu(x), cu(w));
        EXPECT_LE(err(cdx, dx), kTol);
        EXPECT_LE(err(cdw, dw), 1e-5);  // bf16 operands, fp32 accumulation: rounding only
        EXPECT_LE(err(cdb, db), 1e-5);
        Tensor sum = rnd({3, 5, 16}, 7, x_dtype), csum = cu(sum);
        ops::linear_backward_accumulate(sum, dw, nullptr, dy, x, w);
        ops::linear_backward_accumulate(csum, cdw, nullptr, cu(dy), cu(x), cu(w));
        EXPECT_LE(err(csum, sum), kTol);
      }
}

// The feed-forward's first layer in bf16: product, bias and ReLU in the GEMM's pass against the
// CPU's product then ReLU, for each operand and output type.
TEST_F(CudaBf16Ops, LinearWithReluEqualsLinearThenRelu) {
  const Tensor w = rnd({24, 16}, 2, DType::f32), b = rnd({24}, 3, DType::f32);
  for (DType x_dtype : {DType::f32, DType::bf16})
    for (DType y_dtype : {DType::f32, DType::bf16}) {
      SCOPED_TRACE(std::string("x ") + dtype_name(x_dtype) + " y " + dtype_name(y_dtype));
      const Tensor x = rnd({3, 5, 16}, 1, x_dtype);
      Tensor y, cy;
      ops::linear_relu_forward(y, x, w, b, y_dtype);
      ops::linear_relu_forward(cy, cu(x), cu(w), cu(b), y_dtype);
      EXPECT_EQ(cy.dtype(), y_dtype);
      EXPECT_LE(err(cy, y), kTol);
    }
}

// The tanh GELU's epilogues in bf16 (the bf16 activations' feed-forward: bf16 x, output and
// pre-activation) against the CPU's product then GELU: forward (GELU_AUX_BIAS: the output and
// the pre-activation) and a next layer's input gradient through the GELU (DGELU), with the
// epilogues (24 outputs, a multiple of 8), without (13: the kernels after the product), and
// with the epilogues switched off.
TEST_F(CudaBf16Ops, LinearWithGeluTanhEqualsLinearThenGelu) {
  struct Reset {
    ~Reset() { cuda::set_gelu_epilogue(true); }
  } reset;
  for (bool epilogue : {true, false})
    for (i64 width : {24, 13}) {
      SCOPED_TRACE("width " + std::to_string(width) + (epilogue ? "" : ", epilogues off"));
      cuda::set_gelu_epilogue(epilogue);
      const long fallbacks = cuda::gelu_epilogue_fallbacks();
      const Tensor x = rnd({3, 5, 16}, 1), w = rnd({width, 16}, 2, DType::f32),
                   b = rnd({width}, 3, DType::f32);
      Tensor a, pre, ca, cpre;
      ops::linear_gelu_tanh_forward(a, pre, x, w, b, DType::bf16);
      ops::linear_gelu_tanh_forward(ca, cpre, cu(x), cu(w), cu(b), DType::bf16);
      EXPECT_EQ(ca.dtype(), DType::bf16);
      EXPECT_EQ(cpre.dtype(), DType::bf16);
      EXPECT_LE(err(cpre, pre), kTol);
      EXPECT_LE(err(ca, a), kTol);
      const Tensor w2 = rnd({7, width}, 4, DType::f32), dy = rnd({3, 5, 7}, 5);
      Tensor dh, dw2 = Tensor::zeros({7, width}, DType::f32), db2 = Tensor::zeros({7}, DType::f32);
      Tensor cdh, cdw2 = cu(dw2), cdb2 = cu(db2);
      ops::linear_backward_through_gelu_tanh(dh, dw2, &db2, dy, a, w2, pre);
      ops::linear_backward_through_gelu_tanh(cdh, cdw2, &cdb2, cu(dy), ca, cu(w2), cpre);
      EXPECT_EQ(cdh.dtype(), DType::bf16);
      EXPECT_LE(err(cdh, dh), kTol);
      EXPECT_LE(err(cdw2, dw2), kTol);
      EXPECT_LE(err(cdb2, db2), kTol);
      // Where the epilogues apply, cuBLASLt took both (else the kernels ran: right, but not
      // what the benchmark's epilogue rows mean to time).
      EXPECT_EQ(cuda::gelu_epilogue_fallbacks(), fallbacks) << "cuBLASLt declined a GELU epilogue";
    }
}

TEST_F(CudaBf16Ops, LayerNormActivationsAndSums) {
  const Tensor x = rnd({4, 7, 32}, 10, DType::f32, -3, 3), g = rnd({32}, 11, DType::f32),
               b = rnd({32}, 12, DType::f32);
  Tensor y, mean, rstd, cy, cmean, crstd;
  ops::layernorm_forward(y, mean, rstd, x, g, b, 1e-5, DType::bf16);
  ops::layernorm_forward(cy, cmean, crstd, cu(x), cu(g), cu(b), 1e-5, DType::bf16);
  EXPECT_LE(err(cy, y), kTol);
  const Tensor dy = rnd({4, 7, 32}, 13), res = rnd({4, 7, 32}, 14, DType::f32), cres = cu(res);
  Tensor dx, dg = Tensor::zeros({32}, DType::f32), db = Tensor::zeros({32}, DType::f32);
  Tensor cdx, cdg = cu(dg), cdb = cu(db);
  ops::layernorm_backward(dx, dg, db, dy, x, g, mean, rstd, &res);
  ops::layernorm_backward(cdx, cdg, cdb, cu(dy), cu(x), cu(g), cmean, crstd, &cres);
  EXPECT_LE(err(cdx, dx), 1e-5);  // f32 result from bf16 dy: rounding only
  EXPECT_LE(err(cdg, dg), 1e-5);
  EXPECT_LE(err(cdb, db), 1e-5);
  const Tensor h = rnd({4, 7, 32}, 15, DType::bf16, -3, 3);
  for (auto act : {ops::Activation::gelu, ops::Activation::gelu_tanh, ops::Activation::relu}) {
    Tensor a, ca, da, cda;
    ops::activation_forward(a, h, act);
    ops::activation_forward(ca, cu(h), act);
    EXPECT_LE(err(ca, a), kTol);
    ops::activation_backward(da, dy, h, act, a);
    ops::activation_backward(cda, cu(dy), cu(h), act, ca);
    EXPECT_LE(err(cda, da), kTol);
  }
  Tensor sum, csum;  // f32 + bf16: f32
  ops::add(sum, res, h);
  ops::add(csum, cres, cu(h));
  EXPECT_LE(err(csum, sum), 1e-6);
  Tensor acc = h.clone(), cacc = cu(h);
  ops::add_accumulate(acc, res);
  ops::add_accumulate(cacc, cres);
  EXPECT_LE(err(cacc, acc), kTol);
  ops::bias_add_inplace(acc, b);
  ops::bias_add_inplace(cacc, cu(b));
  EXPECT_LE(err(cacc, acc), kTol);
  Tensor keep = Tensor::empty(h.shape(), DType::u8);
  for (i64 i = 0; i < keep.numel(); ++i) keep.data<std::uint8_t>()[i] = i % 5 != 0;
  const Tensor ckeep = cu(keep);
  Tensor d, cd;
  ops::dropout_add(d, res, h, keep, 0.2);
  ops::dropout_add(cd, cres, cu(h), ckeep, 0.2);
  EXPECT_LE(err(cd, d), 1e-6);
  ops::dropout_apply(d, h, keep, 0.2);
  ops::dropout_apply(cd, cu(h), ckeep, 0.2);
  EXPECT_LE(err(cd, d), kTol);
}

TEST_F(CudaBf16Ops, AttentionWithBf16Projections) {
  // Cross-attention shapes (Tq != Tk), key padding, and dropout: the materialised path (heads
  // above the flash kernels' 128 columns, and gpu_kernels' "attention" case).
  const i64 B = 2, T = 6, S = 7, heads = 2, d = 16;
  const Tensor q = rnd({B, T, d}, 30), k = rnd({B, S, d}, 31), v = rnd({B, S, d}, 32),
               dout = rnd({B, T, d}, 33);
  Tensor lens = Tensor::empty({B}, DType::i32);
  lens.data<std::int32_t>()[0] = 7;
  lens.data<std::int32_t>()[1] = 4;
  Tensor keep = Tensor::empty({B, heads, T, S}, DType::u8);
  for (i64 i = 0; i < keep.numel(); ++i) keep.data<std::uint8_t>()[i] = (i * 7 + 3) % 5 != 0;
  const Tensor ckeep = cu(keep);
  const double keep_scale = 1.25;
  Tensor out, probs, cout, cprobs;
  ops::attention_forward(out, probs, q, k, v, lens, keep, keep_scale, heads, false, 0);
  ops::attention_forward(cout, cprobs, cu(q), cu(k), cu(v), cu(lens), ckeep, keep_scale, heads,
                         false, 0);
  EXPECT_LE(err(cout, out), kTol);
  EXPECT_LE(err(cprobs, probs), 1e-5);
  Tensor dq, dk, dv, s, cdq, cdk, cdv, cs;
  ops::attention_backward(dq, dk, dv, s, dout, probs, q, k, v, keep, keep_scale, heads);
  ops::attention_backward(cdq, cdk, cdv, cs, cu(dout), cprobs, cu(q), cu(k), cu(v), ckeep,
                          keep_scale, heads);
  EXPECT_LE(err(cdq, dq), kTol);
  EXPECT_LE(err(cdk, dk), kTol);
  EXPECT_LE(err(cdv, dv), kTol);
}

TEST_F(CudaBf16Ops, FirstRowsMoveBf16Rows) {
  const Tensor x = rnd({3, 5, 8}, 40);
  Tensor first, cfirst;
  take_first_rows(first, x);
  take_first_rows(cfirst, cu(x));
  EXPECT_EQ(err(cfirst, first), 0.0);
  Tensor full, cfull;
  put_first_rows(full, first, 5);
  put_first_rows(cfull, cfirst, 5);
  EXPECT_EQ(err(cfull, full), 0.0);
}

}  // namespace
}  // namespace tr
