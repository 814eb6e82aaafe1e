// Host inputs of a flash attention kernel test (the emulated kernels in CI, the GPU's): bf16
// projections with scores spread over several units (so that the softmax is far from uniform),
// key lengths, the keep mask; and the CPU twin's results on them, which both tests compare
// the kernels with.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "common/attention_case.h"
#include "layers/cpu/bf16.h"
#include "layers/ops.h"
#include "layers/tensor.h"

namespace tr::testing {

struct FlashInputs {
  Tensor q, k, v, dout, kv_len, keep;  // kv_len, keep undefined when the case has none
  double keep_scale = 1.0;
};

// A host bf16 tensor of random bf16 values in [lo, hi].
inline Tensor random_bf16(const Shape& shape, std::uint32_t seed, float lo, float hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  Tensor t = Tensor::empty(shape, DType::bf16);
  for (std::int64_t i = 0; i < t.numel(); ++i)
    t.data<BFloat16>()[i].bits = cpu::f32_to_bf16_bits(dist(rng));
  return t;
}

inline FlashInputs flash_inputs(const AttentionCase& c) {
  FlashInputs in;
  const std::int64_t d = c.H * c.Dh;
  in.q = random_bf16({c.B, c.Tq, d}, 1, -2, 2);
  in.k = random_bf16({c.B, c.Tk, d}, 2, -2, 2);
  in.v = random_bf16({c.B, c.Tk, d}, 3, -1, 1);
  in.dout = random_bf16({c.B, c.Tq, d}, 4, -1, 1);
  if (!c.kv_len.empty()) {
    in.kv_len = Tensor::empty({c.B}, DType::i32);
    for (std::int64_t b = 0; b < c.B; ++b) in.kv_len.data<std::int32_t>()[b] = c.kv_len[b];
  }
  const std::vector<std::uint8_t> keep = attention_keep_mask(c);
  if (!keep.empty()) {
    in.keep = Tensor::empty({c.B, c.H, c.Tq, c.Tk}, DType::u8);
    std::copy(keep.begin(), keep.end(), in.keep.data<std::uint8_t>());
  }
  in.keep_scale = attention_keep_scale(c);
  return in;
}

// The same inputs in f32 (bf16 values widen exactly): for the fp32 kernels.
inline FlashInputs widened_to_f32(const FlashInputs& in) {
  FlashInputs out = in;
  for (Tensor* t : {&out.q, &out.k, &out.v, &out.dout}) {
    Tensor f = Tensor::empty(t->shape(), DType::f32);
    f.copy_from(*t);
    *t = f;
  }
  return out;
}

// The CPU twin's forward and backward (for bf16 inputs call under bf16 products, as the
// kernels compute).
struct FlashResults {
  Tensor out, lse, dq, dk, dv;
};
inline FlashResults flash_on_cpu(const AttentionCase& c, const FlashInputs& in) {
  FlashResults r;
  ops::flash_attention_forward(r.out, r.lse, in.q, in.k, in.v, in.kv_len, in.keep, in.keep_scale,
                               c.H, c.causal, c.q_offset);
  ops::flash_attention_backward(r.dq, r.dk, r.dv, in.dout, r.out, r.lse, in.q, in.k, in.v,
                                in.kv_len, in.keep, in.keep_scale, c.H, c.causal, c.q_offset);
  return r;
}

// A kernel's log-sum-exp against the twin's: equal within `tolerance` relative (above 1), by
// default that of fp32 sums of bf16-rounded scores; +inf (no visible key) on both sides.
inline void expect_lse_near(const std::vector<float>& got, const std::vector<float>& want,
                            double tolerance = 2e-3) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (std::isinf(want[i]))
      EXPECT_TRUE(std::isinf(got[i]) && got[i] > 0) << "row " << i << ": " << got[i];
    else
      EXPECT_NEAR(got[i], want[i], tolerance * std::max(1.0f, std::abs(want[i]))) << "row " << i;
  }
}

}  // namespace tr::testing
