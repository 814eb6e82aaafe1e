// cuDNN's attention with the dropout mask drawn inside its kernels (train.attention_dropout:
// fused; layers/cuda/cudnn_attention.cu's *_drawn_dropout). The mask never leaves cuDNN, so the
// test makes cuDNN show it: with zero queries and keys every visible key has the same
// probability, and with V the identity (a key j's value row is the unit vector e_j, heads at
// least as wide as there are keys) the output row i is mask[i, :] times a constant. The same
// seed draws the same mask for any inputs (Philox is keyed by seed, offset and position only),
// so a second forward on random projections, and its backward, must equal the CPU twin run with
// the revealed mask. Also: the mask keeps about the keep probability, another seed draws
// another mask, and no forward runs on cuDNN before both directions have plans. Skips where no
// GPU or no cuDNN.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "common/flash_inputs.h"
#include "gpu/cuda_test.h"
#include "layers/cpu/bf16.h"
#include "layers/cuda/kernels.h"

namespace tr {
namespace {

using i64 = std::int64_t;
using Case = testing::AttentionCase;
using gpu_test::cu;
using gpu_test::poisoned;
using gpu_test::values;

constexpr float kKeep = 0.9f;

const auto bf = gpu_test::bf16_data;
const auto f32 = gpu_test::f32_data;
const auto lens_of = gpu_test::lengths_data;

using CudnnDrawnDropout = gpu_test::CudnnAttentionTest<::testing::TestWithParam<Case>>;

bool forward(const Case& c, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& kv_len,
             std::uint64_t seed, Tensor& out, Tensor& lse) {
  return cuda::cudnn_attention_forward_drawn_dropout(bf(out), f32(lse), bf(q), bf(k), bf(v),
                                                     lens_of(kv_len), kKeep, seed, c.B, c.H, c.Tq,
                                                     c.Tk, c.Dh, c.causal);
}

// Whether query i of sequence b sees key j (its probability is not 0).
bool visible(const Case& c, i64 b, i64 i, i64 j) {
  if (!c.kv_len.empty() && j >= c.kv_len[static_cast<std::size_t>(b)]) return false;
  return !c.causal || j <= i;
}

// The keep mask u8 [B, H, Tq, Tk] cuDNN draws from `seed`, read from a forward with zero
// queries and keys and identity values; keys a query does not see read 1 (their probability is
// 0, so the CPU twin's result does not depend on them).
std::vector<std::uint8_t> revealed_mask(const Case& c, const Tensor& kv_len, std::uint64_t seed) {
  const i64 d = c.H * c.Dh;
  Tensor zeros = Tensor::zeros({c.B, c.Tq, d}, DType::bf16);
  Tensor keys = Tensor::zeros({c.B, c.Tk, d}, DType::bf16);
  Tensor identity = Tensor::zeros({c.B, c.Tk, d}, DType::bf16);
  for (i64 b = 0; b < c.B; ++b)
    for (i64 j = 0; j < c.Tk; ++j)
      for (i64 h = 0; h < c.H; ++h)
        identity.data<BFloat16>()[(b * c.Tk + j) * d + h * c.Dh + j].bits =
            cpu::f32_to_bf16_bits(1.0f);
  Tensor out = poisoned({c.B, c.Tq, d}, DType::bf16), lse = poisoned({c.B, c.H, c.Tq}, DType::f32);
  EXPECT_TRUE(forward(c, cu(zeros), cu(keys), cu(identity), kv_len, seed, out, lse))
      << cuda::cudnn_attention_last_problem();
  const std::vector<float> o = values(out);
  std::vector<std::uint8_t> keep(static_cast<std::size_t>(c.B * c.H * c.Tq * c.Tk), 1);
  for (i64 b = 0; b < c.B; ++b)
    for (i64 h = 0; h < c.H; ++h)
      for (i64 i = 0; i < c.Tq; ++i)
        for (i64 j = 0; j < c.Tk; ++j)
          if (visible(c, b, i, j))
            keep[static_cast<std::size_t>(((b * c.H + h) * c.Tq + i) * c.Tk + j)] =
                o[static_cast<std::size_t>((b * c.Tq + i) * d + h * c.Dh + j)] != 0.0f;
  return keep;
}

// The kept share of the visible entries.
double kept_share(const Case& c, const std::vector<std::uint8_t>& keep) {
  double kept = 0, seen = 0;
  for (i64 b = 0; b < c.B; ++b)
    for (i64 h = 0; h < c.H; ++h)
      for (i64 i = 0; i < c.Tq; ++i)
        for (i64 j = 0; j < c.Tk; ++j)
          if (visible(c, b, i, j)) {
            kept += keep[static_cast<std::size_t>(((b * c.H + h) * c.Tq + i) * c.Tk + j)];
            ++seen;
          }
  return kept / seen;
}

TEST_P(CudnnDrawnDropout, EqualsTheCpuWithTheMaskItDrew) {
  const Case& c = GetParam();
  ASSERT_LE(c.Tk, c.Dh) << "the reveal needs a value column per key";
  testing::FlashInputs in = testing::flash_inputs(c);  // c.dropout is 0: no mask of its own
  const Tensor kv_len = cu(in.kv_len);
  const std::uint64_t seed = 0x5eed1234abcdULL;
  const std::vector<std::uint8_t> keep = revealed_mask(c, kv_len, seed);
  if (HasFailure()) return;
  const double share = kept_share(c, keep);
  std::printf("kept %.4f of the visible probabilities (keep probability %.2f)\n", share, kKeep);
  EXPECT_NEAR(share, kKeep, 0.02);

  in.keep = Tensor::empty({c.B, c.H, c.Tq, c.Tk}, DType::u8);
  std::copy(keep.begin(), keep.end(), in.keep.data<std::uint8_t>());
  in.keep_scale = 1.0 / static_cast<double>(kKeep);
  const testing::FlashResults host = testing::flash_on_cpu(c, in);

  Tensor out = poisoned(host.out.shape(), DType::bf16),
         lse = poisoned(host.lse.shape(), DType::f32);
  ASSERT_TRUE(forward(c, cu(in.q), cu(in.k), cu(in.v), kv_len, seed, out, lse));
  EXPECT_LE(gpu_test::norm_rel_error(values(out), values(host.out)), 1e-2);
  testing::expect_lse_near(values(lse), values(host.lse));

  Tensor dq = poisoned(in.q.shape(), DType::bf16), dk = poisoned(in.k.shape(), DType::bf16),
         dv = poisoned(in.v.shape(), DType::bf16);
  cuda::cudnn_attention_backward_drawn_dropout(bf(dq), bf(dk), bf(dv), bf(cu(in.dout)),
                                               bf(cu(host.out)), f32(cu(host.lse)), bf(cu(in.q)),
                                               bf(cu(in.k)), bf(cu(in.v)), lens_of(kv_len), kKeep,
                                               seed, c.B, c.H, c.Tq, c.Tk, c.Dh, c.causal);
  EXPECT_LE(gpu_test::norm_rel_error(values(dq), values(host.dq)), 1e-2);
  EXPECT_LE(gpu_test::norm_rel_error(values(dk), values(host.dk)), 1e-2);
  EXPECT_LE(gpu_test::norm_rel_error(values(dv), values(host.dv)), 1e-2);

  // Another seed, another mask.
  const std::vector<std::uint8_t> other = revealed_mask(c, kv_len, seed + 1);
  std::size_t differing = 0;
  for (std::size_t i = 0; i < keep.size(); ++i) differing += keep[i] != other[i];
  EXPECT_GT(differing, keep.size() / 50) << "seeds " << seed << " and " << seed + 1;
}

// Heads of 64 and at most 64 keys (the reveal's identity values): self-attention, padded
// sources, a causal decoder, cross-attention.
INSTANTIATE_TEST_SUITE_P(Shapes, CudnnDrawnDropout,
                         ::testing::Values(Case{2, 3, 64, 64, 64, {}, false, 0, 0.0},
                                           Case{2, 2, 64, 64, 64, {64, 30}, false, 0, 0.0},
                                           Case{2, 2, 64, 64, 64, {}, true, 0, 0.0},
                                           Case{2, 2, 40, 50, 64, {50, 17}, false, 0, 0.0}));

// With the default policy a shape's first call plans nothing, so nothing runs on cuDNN (the
// caller draws its own mask); the second call has both directions' plans and runs.
TEST(CudnnDrawnDropoutPlans, NoForwardBeforeBothPlans) {
  TR_REQUIRE_CUDA();
  if (!cuda::cudnn_attention_available())
    GTEST_SKIP() << "cuDNN not used here: " << cuda::cudnn_attention_status();
  const Case c{3, 2, 48, 48, 64, {}, false, 0, 0.0};
  const testing::FlashInputs in = testing::flash_inputs(c);
  Tensor out = poisoned(in.q.shape(), DType::bf16), lse = poisoned({c.B, c.H, c.Tq}, DType::f32);
  cuda::set_cudnn_plan_policy(2, 1e9);
  EXPECT_FALSE(forward(c, cu(in.q), cu(in.k), cu(in.v), Tensor(), 7, out, lse));
  for (float x : values(out)) ASSERT_TRUE(std::isnan(x));
  EXPECT_TRUE(forward(c, cu(in.q), cu(in.k), cu(in.v), Tensor(), 7, out, lse))
      << cuda::cudnn_attention_last_problem();
  cuda::set_cudnn_plan_policy(1, 1e9);
}

}  // namespace
}  // namespace tr
