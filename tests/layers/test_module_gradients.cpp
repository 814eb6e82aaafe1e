// Every module's backward against central finite differences in fp64 (relative error <= 1e-6).
#include <gtest/gtest.h>

#include "common/grad_check.h"
#include "layers/attention.h"
#include "layers/cross_entropy.h"
#include "layers/dropout.h"
#include "layers/embedding.h"
#include "layers/feed_forward.h"
#include "layers/layer_norm.h"
#include "layers/linear.h"
#include "layers/patch_embedding.h"
#include "layers/positional_encoding.h"
#include "models/init.h"

namespace tr {
namespace {

using testing::Checked;
using testing::expect_gradients_match;
using testing::random_tensor;
using testing::weighted_sum;

constexpr DType f64 = DType::f64;

// Random values for every parameter (not the init rules: ones and zeros would hide errors).
void randomize(const ParameterList& params, std::mt19937_64& rng) {
  for (Parameter* p : params) p->value.copy_from(random_tensor(p->value.shape(), rng, 0.5));
}

std::vector<Checked> param_checks(const ParameterList& params) {
  std::vector<Checked> out;
  for (Parameter* p : params) out.push_back({p->name, p->value, p->grad});
  return out;
}

void zero_grads(const ParameterList& params) {
  for (Parameter* p : params) p->grad.zero_();
}

Tensor lengths(std::initializer_list<std::int32_t> values) {
  Tensor t = Tensor::empty({static_cast<std::int64_t>(values.size())}, DType::i32);
  std::int64_t i = 0;
  for (auto v : values) t.data<std::int32_t>()[i++] = v;
  return t;
}

TEST(ModuleGradients, Linear) {
  for (bool bias : {true, false}) {
    std::mt19937_64 rng(1);
    Linear lin("fc", 7, 5, bias, f64);
    ParameterList params;
    lin.collect_parameters(params);
    randomize(params, rng);
    Tensor x = random_tensor({3, 2, 7}, rng), w = random_tensor({3, 2, 5}, rng);
    Tensor dx;
    auto loss = [&] { return weighted_sum(lin.forward(x), w); };
    auto both = [&] {
      zero_grads(params);
      loss();
      dx = lin.backward(w);
    };
    auto checks = param_checks(params);
    both();
    checks.push_back({"x", x, dx});
    expect_gradients_match(loss, both, checks);
  }
}

TEST(ModuleGradients, LayerNorm) {
  std::mt19937_64 rng(2);
  LayerNorm norm("norm", 13, f64);
  ParameterList params;
  norm.collect_parameters(params);
  randomize(params, rng);
  Tensor x = random_tensor({4, 13}, rng, 2.0), w = random_tensor({4, 13}, rng), dx;
  auto loss = [&] { return weighted_sum(norm.forward(x), w); };
  auto both = [&] {
    zero_grads(params);
    loss();
    dx = norm.backward(w);
  };
  both();
  auto checks = param_checks(params);
  checks.push_back({"x", x, dx});
  expect_gradients_match(loss, both, checks);
}

TEST(ModuleGradients, FeedForwardReluGeluAndGeluTanh) {
  for (auto act : {ops::Activation::relu, ops::Activation::gelu, ops::Activation::gelu_tanh}) {
    std::mt19937_64 rng(3);
    FeedForward ffn("ffn", 6, 11, act, f64);
    ParameterList params;
    ffn.collect_parameters(params);
    randomize(params, rng);
    Tensor x = random_tensor({2, 3, 6}, rng), w = random_tensor({2, 3, 6}, rng), dx;
    auto loss = [&] { return weighted_sum(ffn.forward(x), w); };
    auto both = [&] {
      zero_grads(params);
      loss();
      dx = ffn.backward(w);
    };
    both();
    auto checks = param_checks(params);
    checks.push_back({"x", x, dx});
    expect_gradients_match(loss, both, checks);
  }
}

struct AttentionCase {
  bool causal;
  bool padded;
  double dropout;
};

TEST(ModuleGradients, SelfAttention) {
  for (AttentionCase c : {AttentionCase{false, false, 0.0}, AttentionCase{false, true, 0.0},
                          AttentionCase{true, true, 0.0}, AttentionCase{true, false, 0.3}}) {
    std::mt19937_64 rng(4);
    MultiHeadAttention attn("attn", 12, 3, c.causal, c.dropout, 9, f64);
    ParameterList params;
    attn.collect_parameters(params);
    randomize(params, rng);
    Tensor x = random_tensor({3, 5, 12}, rng), w = random_tensor({3, 5, 12}, rng), dx;
    Tensor len = c.padded ? lengths({5, 2, 4}) : Tensor();
    ForwardContext ctx{c.dropout > 0, 11, 3, 0};
    auto loss = [&] { return weighted_sum(attn.forward(x, x, len, ctx), w); };
    auto both = [&] {
      zero_grads(params);
      loss();
      dx = attn.backward_self(w);
    };
    both();
    auto checks = param_checks(params);
    checks.push_back({"x", x, dx});
    SCOPED_TRACE("causal " + std::to_string(c.causal) + " padded " + std::to_string(c.padded) +
                 " dropout " + std::to_string(c.dropout));
    expect_gradients_match(loss, both, checks);
  }
}

TEST(ModuleGradients, CrossAttention) {
  std::mt19937_64 rng(5);
  MultiHeadAttention attn("cross", 8, 2, false, 0.0, 4, f64);
  ParameterList params;
  attn.collect_parameters(params);
  randomize(params, rng);
  Tensor xq = random_tensor({2, 3, 8}, rng), xkv = random_tensor({2, 7, 8}, rng);
  Tensor w = random_tensor({2, 3, 8}, rng), len = lengths({7, 3}), dxq, dxkv;
  ForwardContext ctx;
  auto loss = [&] { return weighted_sum(attn.forward(xq, xkv, len, ctx), w); };
  auto both = [&] {
    zero_grads(params);
    loss();
    dxkv = Tensor::zeros(xkv.shape(), f64);
    dxq = attn.backward_cross(w, dxkv);
  };
  both();
  auto checks = param_checks(params);
  checks.push_back({"x_q", xq, dxq});
  checks.push_back({"x_kv", xkv, dxkv});
  expect_gradients_match(loss, both, checks);
}

TEST(ModuleGradients, EmbeddingWithRepeatedIds) {
  std::mt19937_64 rng(6);
  Embedding emb("embed", 11, 4, f64);
  ParameterList params;
  emb.collect_parameters(params);
  randomize(params, rng);
  Tensor ids = Tensor::empty({2, 3}, DType::i32);
  const std::int32_t values[] = {3, 0, 3, 10, 7, 3};
  std::copy(values, values + 6, ids.data<std::int32_t>());
  Tensor w = random_tensor({2, 3, 4}, rng), out;
  auto loss = [&] {
    emb.forward(out, ids);
    return weighted_sum(out, w);
  };
  auto both = [&] {
    zero_grads(params);
    loss();
    emb.backward_accumulate(ids, w);
  };
  expect_gradients_match(loss, both, param_checks(params));
  EXPECT_NEAR(emb.scale(), 2.0, 1e-15);  // sqrt(d)
}

TEST(ModuleGradients, LearnedPositions) {
  std::mt19937_64 rng(7);
  PositionalEncoding pos("pos", PositionalEncoding::Kind::learned, 6, 4, f64);
  ParameterList params;
  pos.collect_parameters(params);
  ASSERT_EQ(params.size(), 1u);
  randomize(params, rng);
  Tensor x = random_tensor({3, 5, 4}, rng), w = random_tensor({3, 5, 4}, rng), y;
  auto loss = [&] {
    y = x.clone();
    pos.forward_inplace(y);
    return weighted_sum(y, w);
  };
  auto both = [&] {
    zero_grads(params);
    loss();
    pos.backward_accumulate(w);
  };
  expect_gradients_match(loss, both, param_checks(params));
}

TEST(ModuleGradients, SinusoidalPositionsMatchFormula) {
  PositionalEncoding pos("pos", PositionalEncoding::Kind::sinusoidal, 9, 6, f64);
  ParameterList params;
  pos.collect_parameters(params);
  EXPECT_TRUE(params.empty());
  Tensor x = Tensor::zeros({1, 9, 6}, f64);
  pos.forward_inplace(x);
  for (int p = 0; p < 9; ++p)
    for (int i = 0; i < 6; i += 2) {
      const double angle = p / std::pow(10000.0, i / 6.0);
      EXPECT_NEAR(x.data<double>()[p * 6 + i], std::sin(angle), 1e-15);
      EXPECT_NEAR(x.data<double>()[p * 6 + i + 1], std::cos(angle), 1e-15);
    }
}

TEST(ModuleGradients, PatchEmbedding) {
  std::mt19937_64 rng(8);
  PatchEmbedding pe("patch_embed", 2, 3, 5, f64);
  ParameterList params;
  pe.collect_parameters(params);
  randomize(params, rng);
  Tensor images = random_tensor({2, 2, 6, 9}, rng);  // 2 x 3 patch grid
  Tensor w = random_tensor({2, 6, 5}, rng);
  auto loss = [&] { return weighted_sum(pe.forward(images), w); };
  auto both = [&] {
    zero_grads(params);
    loss();
    pe.backward(w);
  };
  expect_gradients_match(loss, both, param_checks(params));
}

TEST(ModuleGradients, PatchOrderIsChannelRowCol) {
  // One output unit reading patch element k must see pixel (c, r, col) with k = (c*P + r)*P + col.
  PatchEmbedding pe("patch_embed", 2, 2, 8, f64);
  pe.proj.weight.value.zero_();
  pe.proj.bias.value.zero_();
  for (int k = 0; k < 8; ++k) pe.proj.weight.value.data<double>()[k * 8 + k] = 1.0;
  Tensor images = Tensor::empty({1, 2, 2, 4}, f64);  // patches: left and right 2x2 blocks
  for (int i = 0; i < 16; ++i) images.data<double>()[i] = i;
  Tensor y = pe.forward(images);
  // patch 1 (right block), element (c=1, r=1, col=0) is pixel [1, 1, 2] = 8 + 4 + 2 = 14
  EXPECT_EQ(y.data<double>()[1 * 8 + (1 * 2 + 1) * 2 + 0], 14.0);
  EXPECT_EQ(y.data<double>()[0 * 8 + 1], 1.0);  // patch 0, (c=0, r=0, col=1)
}

TEST(ModuleGradients, DropoutMaskIsDeterministicAndScaled) {
  Dropout drop(0.5, 3);
  Tensor x = Tensor::empty({4, 50}, f64);
  for (int i = 0; i < 200; ++i) x.data<double>()[i] = 1.0;
  ForwardContext ctx{true, 42, 7, 100};
  Tensor a = drop.forward(x, ctx).clone();
  Tensor b = drop.forward(x, ctx).clone();
  int kept = 0;
  for (int i = 0; i < 200; ++i) {
    EXPECT_EQ(a.data<double>()[i], b.data<double>()[i]);
    EXPECT_TRUE(a.data<double>()[i] == 0.0 || a.data<double>()[i] == 2.0);
    kept += a.data<double>()[i] != 0.0;
  }
  EXPECT_GT(kept, 60);
  EXPECT_LT(kept, 140);
  // Samples keyed by global index: the last 2 rows alone (sample_offset 102) get the same masks.
  Tensor tail = Tensor::empty({2, 50}, f64);
  for (int i = 0; i < 100; ++i) tail.data<double>()[i] = 1.0;
  Tensor c = drop.forward(tail, ForwardContext{true, 42, 7, 102});
  for (int i = 0; i < 100; ++i) EXPECT_EQ(c.data<double>()[i], a.data<double>()[100 + i]);
  // Backward applies the same mask and scale.
  Tensor dy = Tensor::empty({2, 50}, f64);
  for (int i = 0; i < 100; ++i) dy.data<double>()[i] = 3.0;
  Tensor dx = drop.backward(dy);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(dx.data<double>()[i], 3.0 * c.data<double>()[i]);
  // Inactive when not training.
  EXPECT_TRUE(drop.forward(x, ForwardContext{}).same_buffer(x));
}

TEST(ModuleGradients, CrossEntropyWithSmoothingAndIgnore) {
  std::mt19937_64 rng(9);
  Tensor logits = random_tensor({2, 3, 7}, rng, 2.0);
  Tensor targets = Tensor::empty({2, 3}, DType::i32);
  const std::int32_t values[] = {1, 6, 0, 2, 0, 5};  // 0 is the ignored pad id
  std::copy(values, values + 6, targets.data<std::int32_t>());
  CrossEntropy ce(0.1, 0);
  Tensor dlogits;
  auto loss = [&] { return ce.forward(logits, targets); };
  auto both = [&] {
    loss();
    dlogits = ce.backward(1.0);
  };
  both();
  EXPECT_EQ(ce.counted_rows(), 4);
  expect_gradients_match(loss, both, {{"logits", logits, dlogits}});
  // Given a host copy of the targets (a device batch's), it counts from that copy: the same
  // loss and count when it equals the targets; a copy with one more pad counts one fewer row
  // (so it is the copy that was read), and one of another size is refused.
  const double plain = ce.forward(logits, targets);
  Tensor host_copy = targets.clone();
  EXPECT_EQ(ce.forward(logits, targets, host_copy), plain);
  EXPECT_EQ(ce.counted_rows(), 4);
  host_copy.data<std::int32_t>()[0] = 0;
  ce.forward(logits, targets, host_copy);
  EXPECT_EQ(ce.counted_rows(), 3);
  EXPECT_THROW(ce.forward(logits, targets, Tensor::empty({5}, DType::i32)), InternalError);
}

}  // namespace
}  // namespace tr
