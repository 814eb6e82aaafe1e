// bf16 attention through cuDNN's fused engines (layers/cuda/cudnn_attention.cu) against the
// CPU twin of the flash kernels on the same projections, under bf16 products: outputs, the
// log-sum-exp the backward reads (the own kernels' form, so either implementation may run
// either direction) and every input gradient, for the shapes the models send (ViT-B/16's 197
// tokens, padded sources, causal decoders, cross-attention, heads of 32 to 128) and a source of
// length 0, with and without dropout (the caller's keep mask: the CPU's masks). Outputs start as
// NaN, so an element cuDNN does not write fails. Bounds as the own kernels' test: 1e-2 in the
// 2-norm. Then what cuDNN must decline (a causal offset, heads not a multiple of 8): the call
// returns false and writes nothing; and the plan policy (a shape planned at its second call,
// none once the plan budget is spent). Skips where no GPU or no cuDNN.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "common/error_measures.h"
#include "common/flash_inputs.h"
#include "gpu/cuda_test.h"
#include "layers/cuda/kernels.h"
#include "layers/ops.h"

namespace tr {
namespace {

using i64 = std::int64_t;
using Case = testing::AttentionCase;
using gpu_test::cu;
using gpu_test::poisoned;
using gpu_test::values;

const auto bf = gpu_test::bf16_data;
const auto f32 = gpu_test::f32_data;
const auto lens_of = gpu_test::lengths_data;
const std::uint8_t* keep_of(const Tensor& t) {
  return t.defined() ? static_cast<const std::uint8_t*>(t.raw()) : nullptr;
}

using CudnnAttention = gpu_test::CudnnAttentionTest<::testing::TestWithParam<Case>>;

// One case's inputs on the device.
struct DeviceInputs {
  Tensor q, k, v, dout, kv_len, keep;
  float keep_scale;
  explicit DeviceInputs(const testing::FlashInputs& in)
      : q(cu(in.q)),
        k(cu(in.k)),
        v(cu(in.v)),
        dout(cu(in.dout)),
        kv_len(cu(in.kv_len)),
        keep(cu(in.keep)),
        keep_scale(static_cast<float>(in.keep_scale)) {}
};

bool forward(const Case& c, const DeviceInputs& d, Tensor& out, Tensor& lse) {
  return cuda::cudnn_attention_forward(bf(out), f32(lse), bf(d.q), bf(d.k), bf(d.v),
                                       lens_of(d.kv_len), keep_of(d.keep), d.keep_scale, c.B, c.H,
                                       c.Tq, c.Tk, c.Dh, c.causal, c.q_offset);
}

bool backward(const Case& c, const DeviceInputs& d, const Tensor& out, const Tensor& lse,
              Tensor& dq, Tensor& dk, Tensor& dv) {
  return cuda::cudnn_attention_backward(bf(dq), bf(dk), bf(dv), bf(d.dout), bf(out), f32(lse),
                                        bf(d.q), bf(d.k), bf(d.v), lens_of(d.kv_len),
                                        keep_of(d.keep), d.keep_scale, c.B, c.H, c.Tq, c.Tk, c.Dh,
                                        c.causal, c.q_offset);
}

TEST_P(CudnnAttention, EqualsTheCpu) {
  const Case& c = GetParam();
  const testing::FlashInputs in = testing::flash_inputs(c);
  const testing::FlashResults host = testing::flash_on_cpu(c, in);
  const DeviceInputs d(in);

  Tensor out = poisoned(host.out.shape(), DType::bf16),
         lse = poisoned(host.lse.shape(), DType::f32);
  ASSERT_TRUE(forward(c, d, out, lse))
      << "cuDNN declined: " << cuda::cudnn_attention_last_problem();
  EXPECT_LE(gpu_test::norm_rel_error(values(out), values(host.out)), 1e-2);
  testing::expect_lse_near(values(lse), values(host.lse));

  // The backward from the host's forward results: the gradients alone are compared.
  Tensor dq = poisoned(in.q.shape(), DType::bf16), dk = poisoned(in.k.shape(), DType::bf16),
         dv = poisoned(in.v.shape(), DType::bf16);
  ASSERT_TRUE(backward(c, d, cu(host.out), cu(host.lse), dq, dk, dv))
      << "cuDNN declined: " << cuda::cudnn_attention_last_problem();
  EXPECT_LE(gpu_test::norm_rel_error(values(dq), values(host.dq)), 1e-2);
  EXPECT_LE(gpu_test::norm_rel_error(values(dk), values(host.dk)), 1e-2);
  EXPECT_LE(gpu_test::norm_rel_error(values(dv), values(host.dv)), 1e-2);
}

// The same call twice gives the same bits (the backward's dQ is not accumulated by atomics).
TEST_P(CudnnAttention, BackwardIsReproducible) {
  const Case& c = GetParam();
  const DeviceInputs d(testing::flash_inputs(c));
  Tensor out = poisoned(d.q.shape(), DType::bf16), lse = poisoned({c.B, c.H, c.Tq}, DType::f32);
  ASSERT_TRUE(forward(c, d, out, lse));
  std::vector<float> first[3];
  for (int run = 0; run < 2; ++run) {
    Tensor dq = poisoned(d.q.shape(), DType::bf16), dk = poisoned(d.k.shape(), DType::bf16),
           dv = poisoned(d.v.shape(), DType::bf16);
    ASSERT_TRUE(backward(c, d, out, lse, dq, dk, dv));
    const std::vector<float> got[3] = {values(dq), values(dk), values(dv)};
    for (int i = 0; i < 3; ++i) {
      if (run == 0)
        first[i] = got[i];
      else
        EXPECT_EQ(got[i], first[i]) << "gradient " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudnnAttention,
    ::testing::Values(Case{4, 12, 197, 197, 64, {}, false, 0, 0.0},         // ViT-B/16 layer
                      Case{2, 2, 130, 130, 64, {130, 77}, false, 0, 0.0},   // padded sources
                      Case{2, 2, 130, 130, 64, {130, 77}, true, 0, 0.0},    // causal, padded
                      Case{2, 3, 97, 150, 64, {150, 20}, false, 0, 0.0},    // cross-attention
                      Case{1, 2, 200, 200, 128, {}, true, 0, 0.0},          // widest heads
                      Case{2, 4, 33, 33, 32, {}, true, 0, 0.0},             // one ragged tile
                      Case{2, 2, 65, 65, 32, {65, 0}, false, 0, 0.0},       // an empty source
                      Case{4, 12, 197, 197, 64, {}, false, 0, 0.1},         // ViT, dropout
                      Case{2, 2, 130, 130, 64, {130, 77}, true, 0, 0.1},    // decoder, dropout
                      Case{2, 3, 97, 150, 64, {150, 20}, false, 0, 0.2}));  // cross, dropout

// What cuDNN's graphs cannot reproduce goes to the own kernels: nothing is written.
TEST(CudnnAttentionDeclines, CausalOffsetsAndOddHeads) {
  TR_REQUIRE_CUDA();
  const Case cases[] = {Case{1, 2, 40, 100, 64, {}, true, 60, 0.0},  // causal query offset
                        Case{1, 2, 64, 64, 12, {}, false, 0, 0.0}};  // heads of 12
  for (const Case& c : cases) {
    const DeviceInputs d(testing::flash_inputs(c));
    Tensor out = poisoned(d.q.shape(), DType::bf16), lse = poisoned({c.B, c.H, c.Tq}, DType::f32);
    EXPECT_FALSE(forward(c, d, out, lse));
    for (float x : values(out)) ASSERT_TRUE(std::isnan(x));
  }
}

// The default plan policy: a shape's first call runs on the own kernels (nothing written here),
// its second on cuDNN; with the plan budget spent, a new shape stays on the own kernels.
TEST(CudnnAttentionPlans, AtTheSecondCallWithinTheBudget) {
  TR_REQUIRE_CUDA();
  if (!cuda::cudnn_attention_available())
    GTEST_SKIP() << "cuDNN not used here: " << cuda::cudnn_attention_status();
  const Case c{3, 2, 48, 48, 64, {}, false, 0, 0.0};  // a shape no other test plans
  const DeviceInputs d(testing::flash_inputs(c));
  Tensor out = poisoned(d.q.shape(), DType::bf16), lse = poisoned({c.B, c.H, c.Tq}, DType::f32);
  cuda::set_cudnn_plan_policy(2, 1e9);
  EXPECT_FALSE(forward(c, d, out, lse));
  for (float x : values(out)) ASSERT_TRUE(std::isnan(x));
  EXPECT_TRUE(forward(c, d, out, lse)) << cuda::cudnn_attention_last_problem();
  std::printf("cuDNN: %s\n", cuda::cudnn_attention_status().c_str());  // how plans name the GPU
  const Case other{3, 2, 40, 40, 64, {}, false, 0, 0.0};
  const DeviceInputs d2(testing::flash_inputs(other));
  Tensor out2 = poisoned(d2.q.shape(), DType::bf16),
         lse2 = poisoned({other.B, other.H, other.Tq}, DType::f32);
  cuda::set_cudnn_plan_policy(1, 0.0);  // nothing left to spend
  EXPECT_FALSE(forward(other, d2, out2, lse2));
  EXPECT_NE(cuda::cudnn_attention_last_problem().find("plan budget"), std::string::npos)
      << cuda::cudnn_attention_last_problem();
  EXPECT_TRUE(forward(c, d, out, lse));  // the planned shape keeps its plan
  cuda::set_cudnn_plan_policy(1, 1e9);
}

// Switched off, every call goes to the own kernels.
TEST(CudnnAttentionDeclines, WhenSwitchedOff) {
  TR_REQUIRE_CUDA();
  const Case c{1, 2, 64, 64, 64, {}, false, 0, 0.0};
  const DeviceInputs d(testing::flash_inputs(c));
  Tensor out = poisoned(d.q.shape(), DType::bf16), lse = poisoned({c.B, c.H, c.Tq}, DType::f32);
  cuda::set_cudnn_attention_enabled(false);
  const bool taken = forward(c, d, out, lse);
  cuda::set_cudnn_attention_enabled(true);
  EXPECT_FALSE(taken);
}

}  // namespace
}  // namespace tr
