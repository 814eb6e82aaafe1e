// The small kernels around cuDNN's attention (layers/cuda/cudnn_attention_kernels.cuh), compiled
// for the host and run under tests/common/cuda_emulation.h with cudnn_attention.cu's launch
// geometry: seq_len_q filled, the u8 keep mask widened to bf16 1.0 / 0.0 (lengths that are not
// multiples of a thread's four elements or of a block), the output scaled for the dropout
// backward, and the rows of sequences without keys
// set to the own kernels' results (0 rows, lse +inf) with every other row left as it was.
#include "common/cuda_emulation.h"
// (the emulation first: the kernel headers compile against it)
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "common/emulated_kernels.h"
#include "layers/cuda/cudnn_attention_kernels.cuh"

namespace tr {
namespace {

using namespace emu_test;
namespace side = cuda::cudnn_side;

TEST(CudnnSideKernels, FillQueryLengths) {
  for (i64 n : {1, 7, 256, 300}) {
    std::vector<std::int32_t> out(static_cast<std::size_t>(n), -1);
    emu::launch(side::blocks_for(n), side::kThreads, 0, side::fill_i32_kernel, out.data(),
                std::int32_t{197}, n);
    for (std::int32_t x : out) ASSERT_EQ(x, 197) << "n " << n;
  }
}

TEST(CudnnSideKernels, WidenKeepMask) {
  std::mt19937 rng(3);
  std::bernoulli_distribution kept(0.9);
  // Lengths with and without a ragged last thread; the vector path where the buffers allow it.
  for (i64 n : {1, 3, 4, 5, 1023, 1024, 1025, 4097}) {
    std::vector<std::uint8_t> keep(static_cast<std::size_t>(n));
    for (auto& k : keep) k = kept(rng);
    Bits out = poison_bf16(n);
    const i64 threads = (n + side::kMaskPerThread - 1) / side::kMaskPerThread;
    emu::launch(side::blocks_for(threads), side::kThreads, 0, side::widen_keep_mask_kernel,
                out.data(), keep.data(), n);
    const F widened = widen(out);
    for (i64 i = 0; i < n; ++i)
      ASSERT_EQ(widened[static_cast<std::size_t>(i)],
                keep[static_cast<std::size_t>(i)] ? 1.0f : 0.0f)
          << "n " << n << ", element " << i;
    // Both buffers off their alignment by one element: the element-wise path throughout.
    if (n < 2) continue;
    Bits shifted = poison_bf16(n);
    const i64 m = n - 1, shifted_threads = (m + side::kMaskPerThread - 1) / side::kMaskPerThread;
    emu::launch(side::blocks_for(shifted_threads), side::kThreads, 0, side::widen_keep_mask_kernel,
                reinterpret_cast<cuda::bf16*>(shifted.data() + 1), keep.data() + 1, m);
    const F shifted_widened = widen(shifted);
    for (i64 i = 1; i < n; ++i)
      ASSERT_EQ(shifted_widened[static_cast<std::size_t>(i)],
                keep[static_cast<std::size_t>(i)] ? 1.0f : 0.0f)
          << "shifted, n " << n << ", element " << i;
  }
}

// The dropout backward's output scaled by the keep probability: each element the bf16 nearest
// to its product in fp32, the last block ragged.
TEST(CudnnSideKernels, ScaleBf16) {
  for (i64 n : {1, 255, 256, 1000}) {
    const Bits in = to_bf16(random_floats(n, 4));
    Bits out = poison_bf16(n);
    emu::launch(side::blocks_for(n), side::kThreads, 0, side::scale_bf16_kernel, out.data(),
                in.data(), 0.9f, n);
    const F widened = widen(in);
    for (i64 i = 0; i < n; ++i) {
      const std::size_t e = static_cast<std::size_t>(i);
      ASSERT_EQ(out[e], cpu::f32_to_bf16_bits(0.9f * widened[e])) << "n " << n << ", element " << i;
    }
  }
}

TEST(CudnnSideKernels, ClearKeylessRows) {
  const i64 B = 3, H = 2, Tq = 5, Dh = 8;
  const std::vector<std::int32_t> kv_len = {4, 0, 7};  // the middle sequence has no keys
  const Bits before = to_bf16(random_floats(B * Tq * H * Dh, 1));
  const F lse_before = random_floats(B * H * Tq, 2);
  Bits rows = before;
  F lse = lse_before;
  emu::launch(side::blocks_for(B * Tq * H), side::kThreads, 0, side::clear_keyless_rows_kernel,
              rows.data(), lse.data(), kv_len.data(), B, H, Tq, Dh);
  for (i64 b = 0; b < B; ++b)
    for (i64 t = 0; t < Tq; ++t)
      for (i64 h = 0; h < H; ++h) {
        const i64 r = (b * Tq + t) * H + h;
        for (i64 c = 0; c < Dh; ++c) {
          const std::size_t i = static_cast<std::size_t>(r * Dh + c);
          ASSERT_EQ(rows[i], kv_len[static_cast<std::size_t>(b)] == 0 ? 0 : before[i]);
        }
        const std::size_t l = static_cast<std::size_t>((b * H + h) * Tq + t);
        if (kv_len[static_cast<std::size_t>(b)] == 0)
          EXPECT_TRUE(std::isinf(lse[l]) && lse[l] > 0);
        else
          EXPECT_EQ(lse[l], lse_before[l]);
      }
  // Without an lse (the backward's dq): the rows alone.
  Bits dq = before;
  emu::launch(side::blocks_for(B * Tq * H), side::kThreads, 0, side::clear_keyless_rows_kernel,
              dq.data(), static_cast<float*>(nullptr), kv_len.data(), B, H, Tq, Dh);
  EXPECT_EQ(dq, rows);
}

}  // namespace
}  // namespace tr
