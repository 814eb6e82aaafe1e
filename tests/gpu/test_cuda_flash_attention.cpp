// The CUDA flash attention kernels (layers/cuda/flash_attention.cu) against their CPU twin
// (layers/cpu/flash_attention.cpp) on the same bf16 projections, both under bf16 products:
// outputs, the kept log-sum-exp, and every input gradient, for shapes that cover several
// 64-row tiles with ragged ends, each padded head width (8 -> 16, 12 without vector loads,
// 32, 64, 128), cross-attention, key padding with an empty sequence, causal masks with query
// offsets that leave rows without a visible key, and dropout. Outputs start as NaN, so an
// element the kernels do not write fails. The two sides round at different points (the GPU
// rounds each tile's unnormalised probabilities, the CPU the normalised ones): bound 1e-2 in
// the 2-norm. Skips where no GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "gpu/cuda_test.h"
#include "layers/cpu/bf16.h"
#include "layers/cuda/kernels.h"
#include "layers/device.h"
#include "layers/ops.h"

namespace tr {
namespace {

using i64 = std::int64_t;

struct Case {
  i64 B, H, Tq, Tk, Dh;
  std::vector<std::int32_t> kv_len;  // empty: every key exists
  bool causal;
  i64 q_offset;
  double dropout;
};

// Host bf16 tensor of random bf16-representable values in [lo, hi].
Tensor rnd(const Shape& shape, std::uint32_t seed, float lo, float hi) {
  std::vector<float> v = gpu_test::random_floats(shape_numel(shape), seed, lo, hi);
  for (float& x : v) x = cpu::round_to_bf16(x);
  Tensor t = Tensor::empty(shape, DType::bf16);
  t.copy_from(gpu_test::host_tensor(v, shape));
  return t;
}
Tensor cu(const Tensor& t) {
  return t.defined() ? to_device(t, Device::cuda) : Tensor();
}
std::vector<float> values(const Tensor& t) {
  const Tensor h = to_device(t, Device::cpu);
  Tensor f = Tensor::empty(h.shape(), DType::f32);
  f.copy_from(h);
  return std::vector<float>(f.data<float>(), f.data<float>() + f.numel());
}
// A device tensor of NaNs, so that unwritten elements show.
Tensor poisoned(const Shape& shape, DType dtype) {
  Tensor f = gpu_test::host_tensor(gpu_test::poison(shape_numel(shape)), shape);
  Tensor t = Tensor::empty(shape, dtype);
  t.copy_from(f);
  return cu(t);
}

class CudaFlashAttention : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    TR_REQUIRE_CUDA();
    cpu::set_bf16_products(true);
    cuda::set_bf16_matmuls(true);
  }
  void TearDown() override {
    cpu::set_bf16_products(false);
    cuda::set_bf16_matmuls(false);
  }
};

TEST_P(CudaFlashAttention, EqualsTheCpu) {
  const Case& c = GetParam();
  const i64 d = c.H * c.Dh;
  // Scores spread over several units, so the softmax is far from uniform.
  const Tensor q = rnd({c.B, c.Tq, d}, 1, -2, 2), k = rnd({c.B, c.Tk, d}, 2, -2, 2),
               v = rnd({c.B, c.Tk, d}, 3, -1, 1), dout = rnd({c.B, c.Tq, d}, 4, -1, 1);
  Tensor lens, keep;
  if (!c.kv_len.empty()) {
    lens = Tensor::empty({c.B}, DType::i32);
    for (i64 b = 0; b < c.B; ++b) lens.data<std::int32_t>()[b] = c.kv_len[b];
  }
  double keep_scale = 1.0;
  if (c.dropout > 0) {
    keep = Tensor::empty({c.B, c.H, c.Tq, c.Tk}, DType::u8);
    std::mt19937 rng(7);
    std::bernoulli_distribution kept(1.0 - c.dropout);
    for (i64 i = 0; i < keep.numel(); ++i) keep.data<std::uint8_t>()[i] = kept(rng);
    keep_scale = 1.0 / (1.0 - c.dropout);
  }
  const Tensor cq = cu(q), ck = cu(k), cv = cu(v), clens = cu(lens), ckeep = cu(keep);
  ASSERT_TRUE(ops::use_flash_attention(cq, ck, c.H));

  Tensor out, lse;
  ops::flash_attention_forward(out, lse, q, k, v, lens, keep, keep_scale, c.H, c.causal,
                               c.q_offset);
  Tensor cout = poisoned(out.shape(), DType::bf16), clse = poisoned(lse.shape(), DType::f32);
  ops::flash_attention_forward(cout, clse, cq, ck, cv, clens, ckeep, keep_scale, c.H, c.causal,
                               c.q_offset);
  EXPECT_LE(gpu_test::norm_rel_error(values(cout), values(out)), 1e-2);
  // lse: equal within fp32 sums of bf16-rounded scores; +inf (no visible key) on both sides.
  const std::vector<float> got = values(clse), want = values(lse);
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (std::isinf(want[i]))
      EXPECT_TRUE(std::isinf(got[i]) && got[i] > 0) << "row " << i;
    else
      EXPECT_NEAR(got[i], want[i], 2e-3 * std::max(1.0f, std::abs(want[i]))) << "row " << i;
  }

  Tensor dq, dk, dv;
  ops::flash_attention_backward(dq, dk, dv, dout, out, lse, q, k, v, lens, keep, keep_scale, c.H,
                                c.causal, c.q_offset);
  Tensor cdq = poisoned(q.shape(), DType::bf16), cdk = poisoned(k.shape(), DType::bf16),
         cdv = poisoned(v.shape(), DType::bf16);
  // The device backward from the host's forward results: the gradients alone are compared.
  ops::flash_attention_backward(cdq, cdk, cdv, cu(dout), cu(out), cu(lse), cq, ck, cv, clens, ckeep,
                                keep_scale, c.H, c.causal, c.q_offset);
  EXPECT_LE(gpu_test::norm_rel_error(values(cdq), values(dq)), 1e-2);
  EXPECT_LE(gpu_test::norm_rel_error(values(cdk), values(dk)), 1e-2);
  EXPECT_LE(gpu_test::norm_rel_error(values(cdv), values(dv)), 1e-2);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaFlashAttention,
    ::testing::Values(Case{2, 2, 6, 6, 8, {6, 4}, true, 0, 0.0},           // one small tile
                      Case{2, 2, 130, 130, 64, {130, 77}, false, 0, 0.1},  // tiles, dropout
                      Case{2, 3, 97, 150, 12, {150, 20}, false, 0, 0.0},   // cross, no vectors
                      Case{1, 2, 200, 200, 128, {}, true, 0, 0.0},         // widest heads
                      Case{2, 2, 65, 65, 32, {65, 0}, true, 0, 0.2},       // an empty sequence
                      Case{1, 1, 70, 70, 16, {}, true, -5, 0.0},           // rows see no key
                      Case{1, 2, 40, 100, 64, {}, true, 60, 0.0},          // query offset
                      Case{4, 12, 197, 197, 64, {}, false, 0, 0.1}));      // ViT-B/16 layer

TEST(CudaFlashAttentionDispatch, Bf16CudaOnlyAndHeadsUpTo128) {
  TR_REQUIRE_CUDA();
  const Tensor f32 = cu(Tensor::zeros({1, 4, 256}, DType::f32));
  Tensor b16 = Tensor::zeros({1, 4, 256}, DType::bf16);
  const Tensor cb16 = cu(b16);
  EXPECT_TRUE(ops::use_flash_attention(cb16, cb16, 2));   // Dh 128
  EXPECT_FALSE(ops::use_flash_attention(cb16, cb16, 1));  // Dh 256
  EXPECT_FALSE(ops::use_flash_attention(f32, f32, 2));    // fp32 keeps the exact kernels
  EXPECT_FALSE(ops::use_flash_attention(b16, b16, 2));    // the CPU keeps the BLAS kernels
}

}  // namespace
}  // namespace tr
