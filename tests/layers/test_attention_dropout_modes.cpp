// train.attention_dropout on the CPU: `fused` draws masks inside cuDNN's attention, which the
// CPU does not have, so there it must be `exact` bit for bit (flash and materialised paths,
// forward and backward); and the seeds the fused masks are drawn from differ in every part of
// their key and repeat for the same key.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <set>
#include <vector>

#include "layers/attention.h"
#include "layers/dropout.h"
#include "layers/ops.h"

namespace tr {
namespace {

Tensor random_f32(const Shape& shape, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  Tensor t = Tensor::empty(shape, DType::f32);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

std::vector<float> values_of(const Tensor& t) {
  return std::vector<float>(t.data<float>(), t.data<float>() + t.numel());
}

// Output, input gradient and every parameter gradient of one training forward and backward.
std::vector<std::vector<float>> attention_step(bool fused, bool flash) {
  struct Reset {
    ~Reset() {
      ops::set_fused_attention_dropout(false);
      ops::set_flash_attention_on_cpu(false);
    }
  } reset;
  ops::set_fused_attention_dropout(fused);
  ops::set_flash_attention_on_cpu(flash);
  MultiHeadAttention attn("attn", 16, 2, true, 0.3, 5, DType::f32);
  ParameterList params;
  attn.collect_parameters(params);
  std::uint64_t seed = 1;
  for (Parameter* p : params) p->value.copy_from(random_f32(p->value.shape(), seed++));
  for (Parameter* p : params) p->grad = Tensor::zeros(p->value.shape(), DType::f32);
  const Tensor x = random_f32({2, 6, 16}, 100), dy = random_f32({2, 6, 16}, 101);
  const ForwardContext ctx{true, 42, 3, 8};
  std::vector<std::vector<float>> out = {values_of(attn.forward(x, x, Tensor(), ctx))};
  out.push_back(values_of(attn.backward_self(dy)));
  for (const Parameter* p : params) out.push_back(values_of(p->grad));
  return out;
}

TEST(AttentionDropoutModes, FusedIsExactOnTheCpu) {
  for (const bool flash : {false, true}) {
    SCOPED_TRACE(flash ? "flash path" : "materialised path");
    EXPECT_EQ(attention_step(true, flash), attention_step(false, flash));
  }
}

TEST(AttentionDropoutModes, DrawnDropoutIsDeclinedOnTheCpu) {
  const Tensor q = random_f32({1, 4, 8}, 1), k = random_f32({1, 4, 8}, 2),
               v = random_f32({1, 4, 8}, 3);
  Tensor out, lse;
  EXPECT_FALSE(
      ops::flash_attention_forward_drawn_dropout(out, lse, q, k, v, Tensor(), 0.9, 7, 2, false));
}

TEST(AttentionDropoutModes, SeedsDifferInEveryPartOfTheirKey) {
  const ForwardContext base{true, 42, 3, 8};
  const std::uint64_t s = attention_dropout_seed(base, 5, 0);
  EXPECT_EQ(attention_dropout_seed(base, 5, 0), s);
  ForwardContext other_seed = base, other_step = base, other_sample = base;
  other_seed.seed = 43;
  other_step.step = 4;
  other_sample.sample_offset = 9;
  const std::set<std::uint64_t> seeds = {s,
                                         attention_dropout_seed(other_seed, 5, 0),
                                         attention_dropout_seed(other_step, 5, 0),
                                         attention_dropout_seed(other_sample, 5, 0),
                                         attention_dropout_seed(base, 6, 0),
                                         attention_dropout_seed(base, 5, 2)};
  EXPECT_EQ(seeds.size(), 6u);
}

}  // namespace
}  // namespace tr
