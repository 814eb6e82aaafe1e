// The CUDA flash attention kernels (layers/cuda/flash_attention.cu) against their CPU twin
// (layers/cpu/flash_attention.cpp) on the same projections: bf16 ones with both sides under
// bf16 products (both bf16 families: mma.sync, the default, and WMMA), and f32 ones for the
// fp32 kernels:
// outputs, the kept log-sum-exp, and every input gradient, for shapes that cover several
// 64-row tiles with ragged ends, each padded head width (8 -> 16, 12 without vector loads,
// 32, 64, 128), cross-attention, key padding with an empty sequence, causal masks with query
// offsets that leave rows without a visible key, and dropout. Outputs start as NaN, so an
// element the kernels do not write fails. The two sides round at different points (the GPU
// rounds each tile's unnormalised probabilities, the CPU the normalised ones): bound 1e-2 in
// the 2-norm. fp32: 1e-5 of each result's largest magnitude, element by element. Skips where
// no GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "common/error_measures.h"
#include "common/flash_inputs.h"
#include "gpu/cuda_test.h"
#include "layers/cpu/bf16.h"
#include "layers/cuda/kernels.h"
#include "layers/cuda/runtime.h"
#include "layers/device.h"
#include "layers/ops.h"

namespace tr {
namespace {

using i64 = std::int64_t;

using Case = testing::AttentionCase;

using gpu_test::cu;
using gpu_test::poisoned;
using gpu_test::values;

// A GPU with less shared memory per block than a data-centre GPU (an RTX 30 or 40 series GPU:
// 99 KiB) runs heads of 128 on the materialised kernels (dispatch test below): why a case
// cannot run here, or "" where it can.
std::string too_wide_for_this_gpu(bool bf16, i64 Dh) {
  if (cuda::flash_attention_supported(bf16, Dh)) return "";
  return "heads of " + std::to_string(Dh) + " need more shared memory per block than this GPU's " +
         std::to_string(cuda::max_shared_memory_per_block()) + " bytes";
}

// The own kernels: ops:: sends bf16 calls that cuDNN takes to cuDNN, which is switched off here
// (tests/gpu/test_cuda_cudnn_attention.cpp tests that path).
class CudaFlashAttention : public gpu_test::Bf16ProductsTest<::testing::TestWithParam<Case>> {
 protected:
  void SetUp() override {
    gpu_test::Bf16ProductsTest<::testing::TestWithParam<Case>>::SetUp();
    cuda::set_cudnn_attention_enabled(false);
  }
  void TearDown() override {
    cuda::set_cudnn_attention_enabled(true);
    gpu_test::Bf16ProductsTest<::testing::TestWithParam<Case>>::TearDown();
  }
};

// The bf16 kernels of the process's family (mma.sync unless switched to WMMA) on one case.
void check_bf16_kernels(const Case& c) {
  const testing::FlashInputs in = testing::flash_inputs(c);
  const Tensor &q = in.q, &k = in.k, &v = in.v, &dout = in.dout, &lens = in.kv_len, &keep = in.keep;
  const double keep_scale = in.keep_scale;
  const Tensor cq = cu(q), ck = cu(k), cv = cu(v), clens = cu(lens), ckeep = cu(keep);
  if (const std::string why = too_wide_for_this_gpu(true, c.Dh); !why.empty()) GTEST_SKIP() << why;
  ASSERT_TRUE(ops::use_flash_attention(cq, ck, c.H));

  const testing::FlashResults host = testing::flash_on_cpu(c, in);
  const Tensor &out = host.out, &lse = host.lse, &dq = host.dq, &dk = host.dk, &dv = host.dv;
  Tensor cout = poisoned(out.shape(), DType::bf16), clse = poisoned(lse.shape(), DType::f32);
  ops::flash_attention_forward(cout, clse, cq, ck, cv, clens, ckeep, keep_scale, c.H, c.causal,
                               c.q_offset);
  EXPECT_LE(gpu_test::norm_rel_error(values(cout), values(out)), 1e-2);
  testing::expect_lse_near(values(clse), values(lse));

  Tensor cdq = poisoned(q.shape(), DType::bf16), cdk = poisoned(k.shape(), DType::bf16),
         cdv = poisoned(v.shape(), DType::bf16);
  // The device backward from the host's forward results: the gradients alone are compared.
  ops::flash_attention_backward(cdq, cdk, cdv, cu(dout), cu(out), cu(lse), cq, ck, cv, clens, ckeep,
                                keep_scale, c.H, c.causal, c.q_offset);
  EXPECT_LE(gpu_test::norm_rel_error(values(cdq), values(dq)), 1e-2);
  EXPECT_LE(gpu_test::norm_rel_error(values(cdk), values(dk)), 1e-2);
  EXPECT_LE(gpu_test::norm_rel_error(values(cdv), values(dv)), 1e-2);
}

TEST_P(CudaFlashAttention, EqualsTheCpu) {
  check_bf16_kernels(GetParam());
}

// The WMMA kernels (TR_FLASH_KERNELS=wmma), the opt-in family; the process's family after.
class CudaFlashAttentionWmma : public CudaFlashAttention {
 protected:
  void SetUp() override {
    CudaFlashAttention::SetUp();
    previous_ = cuda::flash_mma_kernels();
    cuda::set_flash_mma_kernels(false);
  }
  void TearDown() override {
    cuda::set_flash_mma_kernels(previous_);
    CudaFlashAttention::TearDown();
  }

 private:
  bool previous_ = true;
};

TEST_P(CudaFlashAttentionWmma, EqualsTheCpu) {
  check_bf16_kernels(GetParam());
}

using testing::max_error_to_largest;

using CudaFlashAttentionF32 = ::testing::TestWithParam<Case>;

TEST_P(CudaFlashAttentionF32, EqualsTheCpu) {
  TR_REQUIRE_CUDA();
  const Case& c = GetParam();
  const testing::FlashInputs in = testing::widened_to_f32(testing::flash_inputs(c));
  const Tensor cq = cu(in.q), ck = cu(in.k), cv = cu(in.v), clens = cu(in.kv_len),
               ckeep = cu(in.keep);
  if (const std::string why = too_wide_for_this_gpu(false, c.Dh); !why.empty()) GTEST_SKIP() << why;
  ASSERT_TRUE(ops::use_flash_attention(cq, ck, c.H));

  const testing::FlashResults host = testing::flash_on_cpu(c, in);
  Tensor cout = poisoned(host.out.shape(), DType::f32),
         clse = poisoned(host.lse.shape(), DType::f32);
  ops::flash_attention_forward(cout, clse, cq, ck, cv, clens, ckeep, in.keep_scale, c.H, c.causal,
                               c.q_offset);
  EXPECT_LE(max_error_to_largest(values(cout), values(host.out)), 1e-5);
  testing::expect_lse_near(values(clse), values(host.lse), 1e-5);

  Tensor cdq = poisoned(in.q.shape(), DType::f32), cdk = poisoned(in.k.shape(), DType::f32),
         cdv = poisoned(in.v.shape(), DType::f32);
  ops::flash_attention_backward(cdq, cdk, cdv, cu(in.dout), cu(host.out), cu(host.lse), cq, ck, cv,
                                clens, ckeep, in.keep_scale, c.H, c.causal, c.q_offset);
  EXPECT_LE(max_error_to_largest(values(cdq), values(host.dq)), 1e-5);
  EXPECT_LE(max_error_to_largest(values(cdk), values(host.dk)), 1e-5);
  EXPECT_LE(max_error_to_largest(values(cdv), values(host.dv)), 1e-5);
}

const auto kCases =
    ::testing::Values(Case{2, 2, 6, 6, 8, {6, 4}, true, 0, 0.0},           // one small tile
                      Case{2, 2, 130, 130, 64, {130, 77}, false, 0, 0.1},  // tiles, dropout
                      Case{2, 3, 97, 150, 12, {150, 20}, false, 0, 0.0},   // cross, no vectors
                      Case{1, 2, 200, 200, 128, {}, true, 0, 0.0},         // widest heads
                      Case{2, 2, 65, 65, 32, {65, 0}, true, 0, 0.2},       // an empty sequence
                      Case{1, 1, 70, 70, 16, {}, true, -5, 0.0},           // rows see no key
                      Case{1, 2, 40, 100, 64, {}, true, 60, 0.0},          // query offset
                      Case{4, 12, 197, 197, 64, {}, false, 0, 0.1});       // ViT-B/16 layer

INSTANTIATE_TEST_SUITE_P(Shapes, CudaFlashAttention, kCases);
INSTANTIATE_TEST_SUITE_P(Shapes, CudaFlashAttentionWmma, kCases);
INSTANTIATE_TEST_SUITE_P(Shapes, CudaFlashAttentionF32, kCases);

TEST(CudaFlashAttentionDispatch, CudaOnlyOneDtypeAndHeadsUpTo128) {
  TR_REQUIRE_CUDA();
  const Tensor f32 = cu(Tensor::zeros({1, 4, 256}, DType::f32));
  Tensor b16 = Tensor::zeros({1, 4, 256}, DType::bf16);
  const Tensor cb16 = cu(b16);
  // Heads of 128: the bf16 backward needs 156,160 bytes of shared memory per block, the fp32
  // dk/dv kernel 153,088: an A100 (166,912) or H100 (232,448) runs them, a 99 KiB GPU does not.
  const std::size_t smem = cuda::max_shared_memory_per_block();
  EXPECT_EQ(ops::use_flash_attention(cb16, cb16, 2), smem >= 156160);  // Dh 128
  EXPECT_EQ(ops::use_flash_attention(f32, f32, 2), smem >= 153088);
  if (smem >= 101376) {  // every flash kernel of heads up to 64 fits 99 KiB
    EXPECT_TRUE(ops::use_flash_attention(cb16, cb16, 4));  // Dh 64
    EXPECT_TRUE(ops::use_flash_attention(f32, f32, 4));
  }
  EXPECT_FALSE(ops::use_flash_attention(cb16, cb16, 1));  // Dh 256
  EXPECT_FALSE(ops::use_flash_attention(f32, f32, 1));
  EXPECT_FALSE(ops::use_flash_attention(f32, cb16, 2));  // mixed dtypes
  EXPECT_FALSE(ops::use_flash_attention(b16, b16, 2));   // the CPU keeps the BLAS kernels
}

}  // namespace
}  // namespace tr
