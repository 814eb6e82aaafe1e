// The cross entropy's gradient computed in the logits' place (translation models do so to hold
// one tokens x vocabulary tensor instead of two) equals the gradient into its own buffer, bit
// for bit: whole-vocabulary and vocabulary-shard kernels, with label smoothing, an ignored row
// and padding columns.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "layers/cpu/kernels.h"
#include "layers/cross_entropy.h"

namespace tr {
namespace {

std::vector<float> random_logits(std::size_t n) {
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

TEST(CrossEntropyInPlace, ModuleGradientEqualsTheSeparateOne) {
  const std::int64_t N = 5, V = 37;
  const std::vector<float> values = random_logits(N * V);
  Tensor targets = Tensor::empty({N}, DType::i32);
  const std::int32_t t[] = {3, 0, 36, 7, 12};  // row 3 ignored (ignore_index 7)
  for (std::int64_t n = 0; n < N; ++n) targets.data<std::int32_t>()[n] = t[n];
  std::vector<float> separate;
  for (bool in_place : {false, true}) {
    Tensor logits = Tensor::empty({N, V}, DType::f32);
    std::copy(values.begin(), values.end(), logits.data<float>());
    CrossEntropy ce(0.1, 7);
    ce.forward(logits, targets);
    const Tensor g = ce.backward(0.25, in_place);
    EXPECT_EQ(g.same_buffer(logits), in_place);
    const std::vector<float> got(g.data<float>(), g.data<float>() + g.numel());
    if (!in_place)
      separate = got;
    else
      EXPECT_EQ(got, separate);
  }
}

TEST(CrossEntropyInPlace, ShardKernelInPlaceEqualsSeparate) {
  const cpu::i64 N = 4, V_local = 10, valid = 8, first = 10, V = 18;
  std::vector<float> logits = random_logits(N * V_local);
  const std::vector<double> lse = {3.0, 2.5, 4.0, 3.5};
  const std::int32_t targets[] = {12, -1, 5, 17};  // -1 ignored; 5 on another rank
  std::vector<float> separate(logits.size());
  cpu::ce_shard_backward<float>(separate.data(), logits.data(), lse.data(), targets, N, V_local,
                                valid, first, V, 0.1f, -1, 0.5f);
  cpu::ce_shard_backward<float>(logits.data(), logits.data(), lse.data(), targets, N, V_local,
                                valid, first, V, 0.1f, -1, 0.5f);
  EXPECT_EQ(logits, separate);
  for (cpu::i64 n = 0; n < N; ++n)
    for (cpu::i64 v = valid; v < V_local; ++v) EXPECT_EQ(separate[n * V_local + v], 0.0f);
}

}  // namespace
}  // namespace tr
