// The flash-style attention ops (no stored probabilities; the CUDA flash kernels' CPU twin)
// against the materialised attention ops: the same outputs and input gradients for every mask
// (key padding, causal with query offsets, dropout, rows with no visible key), head widths that
// are not multiples of anything, and cross-attention shapes; the kept log-sum-exp against its
// definition. fp64 to 1e-12; f32 to 1e-5; bf16 operands to bf16 accuracy.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "common/attention_case.h"
#include "layers/cpu/bf16.h"
#include "layers/ops.h"

namespace tr {
namespace {

using Case = testing::AttentionCase;

Tensor random_tensor(const Shape& shape, DType dtype, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> dist(0.0, 1.0);
  Tensor f = Tensor::empty(shape, DType::f64);
  // bf16-representable values, so that every dtype holds the same numbers.
  for (std::int64_t i = 0; i < f.numel(); ++i)
    f.data<double>()[i] = cpu::round_to_bf16(static_cast<float>(dist(rng)));
  if (dtype == DType::f64) return f;
  Tensor f32 = Tensor::empty(shape, DType::f32);
  for (std::int64_t i = 0; i < f.numel(); ++i)
    f32.data<float>()[i] = static_cast<float>(f.data<double>()[i]);
  if (dtype == DType::f32) return f32;
  Tensor out = Tensor::empty(shape, dtype);
  out.copy_from(f32);
  return out;
}

Tensor to_f64(const Tensor& t) {
  if (t.dtype() == DType::f64) return t;
  Tensor f32 = t;
  if (t.dtype() != DType::f32) {
    f32 = Tensor::empty(t.shape(), DType::f32);
    f32.copy_from(t);
  }
  Tensor out = Tensor::empty(t.shape(), DType::f64);
  for (std::int64_t i = 0; i < t.numel(); ++i)
    out.data<double>()[i] = static_cast<double>(f32.data<float>()[i]);
  return out;
}

// max |got - ref| / max |ref|.
double relative_error(const Tensor& got, const Tensor& ref) {
  const Tensor g = to_f64(got), r = to_f64(ref);
  EXPECT_EQ(g.shape(), r.shape());
  double diff = 0, mag = 0;
  for (std::int64_t i = 0; i < r.numel(); ++i) {
    diff = std::max(diff, std::abs(g.data<double>()[i] - r.data<double>()[i]));
    mag = std::max(mag, std::abs(r.data<double>()[i]));
  }
  return diff / std::max(mag, 1e-30);
}

struct Inputs {
  Tensor q, k, v, dout, kv_len, keep;
  double keep_scale = 1.0;
};

Inputs make_inputs(const Case& c, DType dtype) {
  Inputs in;
  const std::int64_t d = c.H * c.Dh;
  in.q = random_tensor({c.B, c.Tq, d}, dtype, 1);
  in.k = random_tensor({c.B, c.Tk, d}, dtype, 2);
  in.v = random_tensor({c.B, c.Tk, d}, dtype, 3);
  in.dout = random_tensor({c.B, c.Tq, d}, dtype, 4);
  if (!c.kv_len.empty()) {
    in.kv_len = Tensor::empty({c.B}, DType::i32);
    for (std::int64_t b = 0; b < c.B; ++b) in.kv_len.data<std::int32_t>()[b] = c.kv_len[b];
  }
  const std::vector<std::uint8_t> keep = testing::attention_keep_mask(c, 5);
  if (!keep.empty()) {
    in.keep = Tensor::empty({c.B, c.H, c.Tq, c.Tk}, DType::u8);
    std::copy(keep.begin(), keep.end(), in.keep.data<std::uint8_t>());
  }
  in.keep_scale = testing::attention_keep_scale(c);
  return in;
}

struct Results {
  Tensor out, dq, dk, dv, lse;
};

Results run_flash(const Case& c, const Inputs& in) {
  Results r;
  ops::flash_attention_forward(r.out, r.lse, in.q, in.k, in.v, in.kv_len, in.keep, in.keep_scale,
                               c.H, c.causal, c.q_offset);
  ops::flash_attention_backward(r.dq, r.dk, r.dv, in.dout, r.out, r.lse, in.q, in.k, in.v,
                                in.kv_len, in.keep, in.keep_scale, c.H, c.causal, c.q_offset);
  return r;
}

Results run_materialised(const Case& c, const Inputs& in) {
  Results r;
  Tensor probs, scratch;
  ops::attention_forward(r.out, probs, in.q, in.k, in.v, in.kv_len, in.keep, in.keep_scale, c.H,
                         c.causal, c.q_offset);
  ops::attention_backward(r.dq, r.dk, r.dv, scratch, in.dout, probs, in.q, in.k, in.v, in.keep,
                          in.keep_scale, c.H);
  return r;
}

// lse[b, h, i] from its definition: log sum over the visible keys of exp(q.k / sqrt(Dh)).
double expected_lse(const Case& c, const Inputs& in, std::int64_t b, std::int64_t h,
                    std::int64_t i) {
  const Tensor q = to_f64(in.q), k = to_f64(in.k);
  const std::int64_t d = c.H * c.Dh;
  std::int64_t limit = c.kv_len.empty() ? c.Tk : c.kv_len[b];
  if (c.causal) limit = std::max<std::int64_t>(0, std::min(limit, i + c.q_offset + 1));
  if (limit == 0) return std::numeric_limits<double>::infinity();
  double sum = 0;
  for (std::int64_t j = 0; j < limit; ++j) {
    double s = 0;
    for (std::int64_t e = 0; e < c.Dh; ++e)
      s += q.data<double>()[(b * c.Tq + i) * d + h * c.Dh + e] *
           k.data<double>()[(b * c.Tk + j) * d + h * c.Dh + e];
    sum += std::exp(s / std::sqrt(static_cast<double>(c.Dh)));
  }
  return std::log(sum);
}

class FlashAttention : public ::testing::TestWithParam<Case> {};

TEST_P(FlashAttention, Fp64EqualsMaterialisedAttention) {
  const Case& c = GetParam();
  const Inputs in = make_inputs(c, DType::f64);
  const Results flash = run_flash(c, in), ref = run_materialised(c, in);
  EXPECT_LT(relative_error(flash.out, ref.out), 1e-12);
  EXPECT_LT(relative_error(flash.dq, ref.dq), 1e-12);
  EXPECT_LT(relative_error(flash.dk, ref.dk), 1e-12);
  EXPECT_LT(relative_error(flash.dv, ref.dv), 1e-12);
  ASSERT_EQ(flash.lse.shape(), Shape({c.B, c.H, c.Tq}));
  for (std::int64_t b = 0; b < c.B; ++b)
    for (std::int64_t h = 0; h < c.H; ++h)
      for (std::int64_t i = 0; i < c.Tq; ++i) {
        const double want = expected_lse(c, in, b, h, i);
        const double got = flash.lse.data<double>()[(b * c.H + h) * c.Tq + i];
        if (std::isinf(want))
          EXPECT_TRUE(std::isinf(got) && got > 0) << b << " " << h << " " << i;
        else
          EXPECT_NEAR(got, want, 1e-12 * std::max(1.0, std::abs(want)));
      }
}

TEST_P(FlashAttention, Fp32EqualsMaterialisedAttention) {
  const Case& c = GetParam();
  const Inputs in = make_inputs(c, DType::f32);
  const Results flash = run_flash(c, in), ref = run_materialised(c, in);
  EXPECT_EQ(flash.lse.dtype(), DType::f32);
  EXPECT_LT(relative_error(flash.out, ref.out), 1e-5);
  EXPECT_LT(relative_error(flash.dq, ref.dq), 1e-5);
  EXPECT_LT(relative_error(flash.dk, ref.dk), 1e-5);
  EXPECT_LT(relative_error(flash.dv, ref.dv), 1e-5);
}

TEST_P(FlashAttention, Bf16OperandsFollowFp64) {
  const Case& c = GetParam();
  cpu::set_bf16_products(true);
  const Inputs in = make_inputs(c, DType::bf16);
  const Results flash = run_flash(c, in);
  cpu::set_bf16_products(false);
  const Results ref = run_materialised(c, make_inputs(c, DType::f64));
  for (const Tensor* t : {&flash.out, &flash.dq, &flash.dk, &flash.dv})
    EXPECT_EQ(t->dtype(), DType::bf16);
  EXPECT_EQ(flash.lse.dtype(), DType::f32);
  EXPECT_LT(relative_error(flash.out, ref.out), 1e-2);
  EXPECT_LT(relative_error(flash.dq, ref.dq), 2e-2);
  EXPECT_LT(relative_error(flash.dk, ref.dk), 2e-2);
  EXPECT_LT(relative_error(flash.dv, ref.dv), 1e-2);
}

INSTANTIATE_TEST_SUITE_P(
    Masks, FlashAttention,
    ::testing::Values(Case{2, 3, 5, 5, 4, {}, false, 0, 0.0},        // plain self-attention
                      Case{2, 2, 6, 9, 5, {9, 4}, false, 0, 0.0},    // cross, key padding
                      Case{2, 2, 7, 7, 3, {7, 5}, true, 0, 0.0},     // causal + padding
                      Case{1, 2, 3, 8, 4, {}, true, 5, 0.0},         // causal, query offset
                      Case{2, 2, 6, 6, 4, {6, 0}, false, 0, 0.0},    // a sequence with no key
                      Case{1, 1, 4, 4, 4, {}, true, -2, 0.0},        // rows with no visible key
                      Case{2, 3, 7, 9, 8, {9, 6}, false, 0, 0.25},   // dropout + padding
                      Case{2, 2, 9, 9, 16, {9, 7}, true, 0, 0.1}));  // all together

}  // namespace
}  // namespace tr
