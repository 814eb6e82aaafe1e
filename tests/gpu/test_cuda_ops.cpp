// The dispatch layer (layers/ops.h) on CUDA tensors against the same ops on CPU tensors: each
// op is called once with host operands and once with device copies of them, and the outputs
// are compared (fp32, 1e-5 relative). Skips where no GPU.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "gpu/cuda_test.h"
#include "layers/cuda/kernels.h"
#include "layers/dropout.h"
#include "layers/ops.h"

namespace tr {
namespace {

using gpu_test::max_rel_error;
using i64 = std::int64_t;

constexpr double kTol = 1e-5;

Tensor rnd(const Shape& shape, std::uint32_t seed, float lo = -1, float hi = 1) {
  return gpu_test::host_tensor(gpu_test::random_floats(shape_numel(shape), seed, lo, hi), shape);
}
using gpu_test::cu;
std::vector<float> host(const Tensor& t) {
  return gpu_test::to_host_vector<float>(t);
}
std::vector<float> host_vec(const Tensor& t) {
  return std::vector<float>(t.data<float>(), t.data<float>() + t.numel());
}
// Relative error of a device result against the host result (floor: absolute near zero).
double err(const Tensor& device, const Tensor& cpu, double floor = 1.0) {
  EXPECT_EQ(device.device(), Device::cuda);
  EXPECT_EQ(device.shape(), cpu.shape());
  return max_rel_error(host(device), host_vec(cpu), floor);
}

class CudaOps : public ::testing::Test {
 protected:
  void SetUp() override { TR_REQUIRE_CUDA(); }
};

TEST_F(CudaOps, Linear) {
  const Tensor x = rnd({3, 5, 16}, 1), w = rnd({24, 16}, 2), b = rnd({24}, 3),
               dy = rnd({3, 5, 24}, 4);
  for (bool with_bias : {false, true}) {
    const Tensor bias = with_bias ? b : Tensor();
    Tensor y, dx, dw = rnd({24, 16}, 5), db = rnd({24}, 6);
    Tensor cy, cdx, cdw = cu(dw), cdb = cu(db);
    ops::linear_forward(y, x, w, bias);
    ops::linear_forward(cy, cu(x), cu(w), cu(bias));
    EXPECT_LE(err(cy, y), kTol) << "forward, bias " << with_bias;
    ops::linear_backward(&dx, dw, with_bias ? &db : nullptr, dy, x, w);
    ops::linear_backward(&cdx, cdw, with_bias ? &cdb : nullptr, cu(dy), cu(x), cu(w));
    EXPECT_LE(err(cdx, dx), kTol);
    EXPECT_LE(err(cdw, dw), kTol);
    EXPECT_LE(err(cdb, db), kTol);
    Tensor sum = rnd({3, 5, 16}, 7), csum = cu(sum);
    ops::linear_backward_accumulate(sum, dw, with_bias ? &db : nullptr, dy, x, w);
    ops::linear_backward_accumulate(csum, cdw, with_bias ? &cdb : nullptr, cu(dy), cu(x), cu(w));
    EXPECT_LE(err(csum, sum), kTol);
    EXPECT_LE(err(cdw, dw), kTol);
  }
}

// The ReLU epilogue (or its fallback) against the CPU's product and ReLU, with and without a
// bias; inputs centred so that about half the outputs are clipped.
TEST_F(CudaOps, LinearWithReluEqualsLinearThenRelu) {
  const Tensor x = rnd({3, 5, 16}, 1), w = rnd({24, 16}, 2), b = rnd({24}, 3);
  for (bool with_bias : {false, true}) {
    const Tensor bias = with_bias ? b : Tensor();
    Tensor y, cy;
    ops::linear_relu_forward(y, x, w, bias, DType::f32);
    ops::linear_relu_forward(cy, cu(x), cu(w), cu(bias), DType::f32);
    EXPECT_LE(err(cy, y), kTol) << "bias " << with_bias;
    const std::vector<float> out = host(cy);
    i64 zeros = 0;
    for (float v : out) {
      ASSERT_GE(v, 0.0f);
      zeros += v == 0.0f;
    }
    EXPECT_GT(zeros, static_cast<i64>(out.size()) / 4) << "too few clipped outputs to test ReLU";
  }
}

// The tanh GELU's fused linear ops in fp32 against the CPU's product then GELU: forward (the
// output and the pre-activation) and a next layer's input gradient through the GELU. fp32
// products take the GELU kernels after the product (the epilogues serve bf16 products:
// CudaBf16Ops.LinearWithGeluTanhEqualsLinearThenGelu), at widths 24 and 13 and with the
// epilogues switched off alike.
TEST_F(CudaOps, LinearWithGeluTanhEqualsLinearThenGelu) {
  for (bool epilogue : {true, false})
    for (i64 width : {24, 13}) {
      SCOPED_TRACE("width " + std::to_string(width) + (epilogue ? "" : ", epilogues off"));
      cuda::set_gelu_epilogue(epilogue);
      const Tensor x = rnd({3, 5, 16}, 1, -2, 2), w = rnd({width, 16}, 2), b = rnd({width}, 3);
      Tensor a, pre, ca, cpre;
      ops::linear_gelu_tanh_forward(a, pre, x, w, b, DType::f32);
      ops::linear_gelu_tanh_forward(ca, cpre, cu(x), cu(w), cu(b), DType::f32);
      EXPECT_LE(err(cpre, pre), kTol);
      EXPECT_LE(err(ca, a), kTol);
      const Tensor w2 = rnd({7, width}, 4), dy = rnd({3, 5, 7}, 5);
      Tensor dh, dw2 = rnd({7, width}, 6), db2 = rnd({7}, 7);
      Tensor cdh, cdw2 = cu(dw2), cdb2 = cu(db2);
      ops::linear_backward_through_gelu_tanh(dh, dw2, &db2, dy, a, w2, pre);
      ops::linear_backward_through_gelu_tanh(cdh, cdw2, &cdb2, cu(dy), ca, cu(w2), cpre);
      EXPECT_LE(err(cdh, dh), kTol);
      EXPECT_LE(err(cdw2, dw2), kTol);
      EXPECT_LE(err(cdb2, db2), kTol);
    }
  cuda::set_gelu_epilogue(true);
}

TEST_F(CudaOps, LayerNormAndActivations) {
  const Tensor x = rnd({4, 7, 32}, 10, -3, 3), w = rnd({32}, 11), b = rnd({32}, 12),
               dy = rnd({4, 7, 32}, 13), res = rnd({4, 7, 32}, 14);
  Tensor y, mean, rstd, dx, dw = rnd({32}, 15), db = rnd({32}, 16);
  Tensor cy, cmean, crstd, cdx, cdw = cu(dw), cdb = cu(db);
  ops::layernorm_forward(y, mean, rstd, x, w, b, 1e-5);
  ops::layernorm_forward(cy, cmean, crstd, cu(x), cu(w), cu(b), 1e-5);
  EXPECT_LE(err(cy, y), kTol);
  const Tensor cres = cu(res);
  ops::layernorm_backward(dx, dw, db, dy, x, w, mean, rstd, &res);
  ops::layernorm_backward(cdx, cdw, cdb, cu(dy), cu(x), cu(w), cmean, crstd, &cres);
  EXPECT_LE(err(cdx, dx), kTol);
  EXPECT_LE(err(cdw, dw), kTol);
  EXPECT_LE(err(cdb, db), kTol);
  for (auto act : {ops::Activation::gelu, ops::Activation::gelu_tanh, ops::Activation::relu}) {
    Tensor a, da, ca, cda;
    ops::activation_forward(a, x, act);
    ops::activation_forward(ca, cu(x), act);
    EXPECT_LE(err(ca, a), kTol);
    ops::activation_backward(da, dy, x, act, a);
    ops::activation_backward(cda, cu(dy), cu(x), act, ca);
    EXPECT_LE(err(cda, da), kTol);
  }
}

TEST_F(CudaOps, ElementwiseAndCopies) {
  const Tensor a = rnd({6, 10}, 20), b = rnd({6, 10}, 21), bias = rnd({10}, 22);
  Tensor out, cout;
  ops::add(out, a, b);
  ops::add(cout, cu(a), cu(b));
  EXPECT_LE(err(cout, out), kTol);
  ops::bias_add_inplace(out, bias);
  ops::bias_add_inplace(cout, cu(bias));
  EXPECT_LE(err(cout, out), kTol);
  ops::add_accumulate(out, a);
  ops::add_accumulate(cout, cu(a));
  EXPECT_LE(err(cout, out), kTol);
  Tensor copy;
  ops::copy(copy, cout);
  EXPECT_LE(err(copy, out), kTol);
  EXPECT_NEAR(ops::sum_squares(cu(a)), ops::sum_squares(a), 1e-9 * ops::sum_squares(a));
}

TEST_F(CudaOps, AttentionWithMasksAndDropout) {
  const i64 B = 2, T = 6, heads = 2, d = 8;
  const Tensor q = rnd({B, T, d}, 30), k = rnd({B, T, d}, 31), v = rnd({B, T, d}, 32),
               dout = rnd({B, T, d}, 33);
  Tensor lens = Tensor::empty({B}, DType::i32);
  lens.data<std::int32_t>()[0] = 6;
  lens.data<std::int32_t>()[1] = 4;
  Tensor keep;
  ops::dropout_mask(keep, {B, heads, T, T}, 0.25, 9, 10, 0, {1 << 20, 1 << 16, 1 << 8});
  Tensor out, probs, dq, dk, dv, scratch, cout, cprobs, cdq, cdk, cdv, cscratch;
  ops::attention_forward(out, probs, q, k, v, lens, keep, 1 / 0.75, heads, true, 0);
  ops::attention_forward(cout, cprobs, cu(q), cu(k), cu(v), cu(lens), cu(keep), 1 / 0.75, heads,
                         true, 0);
  EXPECT_LE(err(cprobs, probs), kTol);
  EXPECT_LE(err(cout, out), kTol);
  ops::attention_backward(dq, dk, dv, scratch, dout, probs, q, k, v, keep, 1 / 0.75, heads);
  ops::attention_backward(cdq, cdk, cdv, cscratch, cu(dout), cprobs, cu(q), cu(k), cu(v), cu(keep),
                          1 / 0.75, heads);
  EXPECT_LE(err(cdq, dq), kTol);
  EXPECT_LE(err(cdk, dk), kTol);
  EXPECT_LE(err(cdv, dv), kTol);
}

TEST_F(CudaOps, EmbeddingAndCrossEntropy) {
  const i64 V = 30, d = 12, N = 10;
  const Tensor table = rnd({V, d}, 40), dout = rnd({2, 5, d}, 41);
  Tensor ids = Tensor::empty({2, 5}, DType::i32), targets = Tensor::empty({N}, DType::i32);
  for (i64 n = 0; n < N; ++n) {
    ids.data<std::int32_t>()[n] = static_cast<std::int32_t>((n * 7) % V);
    targets.data<std::int32_t>()[n] = n == 4 ? -100 : static_cast<std::int32_t>((n * 11) % V);
  }
  Tensor out, cout, dtable = rnd({V, d}, 42), cdtable = cu(dtable);
  ops::embedding_forward(out, ids, table, 2.0);
  ops::embedding_forward(cout, cu(ids), cu(table), 2.0);
  EXPECT_LE(err(cout, out), kTol);
  ops::embedding_backward_accumulate(dtable, ids, dout, 2.0);
  ops::embedding_backward_accumulate(cdtable, cu(ids), cu(dout), 2.0);
  EXPECT_LE(err(cdtable, dtable), kTol);

  const Tensor logits = rnd({N, V}, 43, -4, 4);
  Tensor lse, clse, dl, cdl;
  const double loss = ops::cross_entropy_forward(lse, logits, targets, 0.1, -100);
  const double closs = ops::cross_entropy_forward(clse, cu(logits), cu(targets), 0.1, -100);
  EXPECT_NEAR(closs, loss, kTol * loss);
  ops::cross_entropy_backward(dl, logits, lse, targets, 0.1, -100, 0.5);
  ops::cross_entropy_backward(cdl, cu(logits), clse, cu(targets), 0.1, -100, 0.5);
  EXPECT_LE(err(cdl, dl, 1e-3), kTol);

  // The vocabulary-parallel passes of a shard holding columns [10, 30) of 40, 18 valid.
  const Tensor shard = rnd({N, 20}, 44, -4, 4);
  Tensor mx, cmx, sums, csums, dsh, cdsh;
  ops::ce_shard_max(mx, shard, 18);
  ops::ce_shard_max(cmx, cu(shard), 18);
  ops::ce_shard_sums(sums, shard, targets, mx, 18, 10, -100);
  ops::ce_shard_sums(csums, cu(shard), cu(targets), cmx, 18, 10, -100);
  EXPECT_EQ(gpu_test::to_host_vector<double>(cmx),
            std::vector<double>(mx.data<double>(), mx.data<double>() + N));
  const std::vector<double> got = gpu_test::to_host_vector<double>(csums);
  for (i64 i = 0; i < 3 * N; ++i) EXPECT_NEAR(got[i], sums.data<double>()[i], 1e-9);
  ops::ce_shard_backward(dsh, shard, mx, targets, 18, 10, 40, 0.1, -100, 0.5);  // mx as an lse
  ops::ce_shard_backward(cdsh, cu(shard), cmx, cu(targets), 18, 10, 40, 0.1, -100, 0.5);
  EXPECT_LE(err(cdsh, dsh, 1e-3), kTol);
}

TEST_F(CudaOps, DropoutApplyAndAdd) {
  const Tensor x = rnd({5, 9}, 50), skip = rnd({5, 9}, 51);
  Tensor keep;
  ops::dropout_mask(keep, {5, 9}, 0.3, 1, 2, 0, {1 << 16});
  Tensor out, cout, sum, csum;
  ops::dropout_apply(out, x, keep, 0.3);
  ops::dropout_apply(cout, cu(x), cu(keep), 0.3);
  EXPECT_LE(err(cout, out), kTol);
  ops::dropout_add(sum, skip, x, keep, 0.3);
  ops::dropout_add(csum, cu(skip), cu(x), cu(keep), 0.3);
  EXPECT_LE(err(csum, sum), kTol);
}

// The CUDA kernel behind a device ops::dropout_mask: the counters of layers/dropout.h (an
// attention mask [B, H, Tq, Tk] of samples from 17 on), bit for bit.
TEST_F(CudaOps, StridedDropoutMaskMatchesTheOp) {
  const i64 B = 3, H = 2, Tq = 5, Tk = 70;
  const std::vector<std::uint64_t> strides = {std::uint64_t{1} << kDropoutSampleShift,
                                              std::uint64_t{1} << kDropoutHeadShift,
                                              std::uint64_t{1} << kDropoutRowShift};
  const std::uint64_t offset = std::uint64_t{17} << kDropoutSampleShift;
  Tensor keep;
  ops::dropout_mask(keep, {B, H, Tq, Tk}, 0.1, 42, dropout_stream(3, 5), offset, strides);
  cuda::DropoutLayout layout;
  layout.n = 3;
  const i64 dims[3] = {B, H, Tq};
  for (int j = 0; j < 3; ++j) {
    layout.dims[j] = dims[j];
    layout.strides[j] = strides[static_cast<std::size_t>(j)];
  }
  Tensor ckeep = to_device(Tensor::zeros({B, H, Tq, Tk}, DType::u8), Device::cuda);
  cuda::dropout_mask_strided(ckeep.data<std::uint8_t>(), B * H * Tq, Tk, layout, 0.1f, 42,
                             dropout_stream(3, 5), offset);
  EXPECT_EQ(gpu_test::to_host_vector<std::uint8_t>(ckeep),
            std::vector<std::uint8_t>(keep.data<std::uint8_t>(),
                                      keep.data<std::uint8_t>() + keep.numel()));
}

TEST_F(CudaOps, AnOperandOnTheWrongDeviceIsAnInternalError) {
  const Tensor x = rnd({2, 4}, 60), w = rnd({3, 4}, 61);
  Tensor y;
  EXPECT_THROW(ops::linear_forward(y, cu(x), w, Tensor()), InternalError);
}

}  // namespace
}  // namespace tr
