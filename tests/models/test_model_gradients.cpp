// Whole-model backward against central finite differences in fp64, for every model variant,
// with dropout active (its masks are deterministic) and label smoothing.
#include <gtest/gtest.h>

#include <cstdio>

#include "common/grad_check.h"
#include "common/tiny_models.h"
#include "models/model.h"
#include "models/transformer_layers.h"
#include "trainer/synthetic_data.h"

namespace tr {
namespace {

using testing::Checked;
using testing::expect_gradients_match;

using testing::tiny_translation;
using testing::tiny_vit;

void check_model(const ModelConfig& config, double label_smoothing) {
  auto model = make_model(config, DType::f64, label_smoothing, 5);
  // Random-ish LayerNorm parameters too: ones and zeros would hide errors in their gradients.
  std::mt19937_64 rng(3);
  for (Parameter* p : model->parameters())
    p->value.copy_from(testing::random_tensor(p->value.shape(), rng, 0.4));
  Batch batch;
  if (config.type == "vit")
    synthetic_image_batch(batch, config, 3, 9, 0, DType::f64);
  else
    synthetic_copy_batch(batch, config, 3, 5, 9, 0);
  const ForwardContext ctx{true, 17, 2, 0};
  auto loss = [&] {
    const double sum = model->forward(batch, ctx);
    return sum / static_cast<double>(model->counted_targets());
  };
  auto both = [&] {
    model->zero_grad();
    loss();
    model->backward(1.0 / static_cast<double>(model->counted_targets()));
  };
  std::vector<Checked> checks;
  for (Parameter* p : model->parameters()) checks.push_back({p->name, p->value, p->grad});
  expect_gradients_match(loss, both, checks, 1e-6, /*max_elements=*/6);
}

TEST(ModelGradients, EncoderDecoderPreLnSharedReluSinusoidal) {
  check_model(tiny_translation("pre", true, "relu", "sinusoidal"), 0.1);
}

TEST(ModelGradients, EncoderDecoderPostLnSeparateGeluLearned) {
  check_model(tiny_translation("post", false, "gelu", "learned"), 0.1);
}

TEST(ModelGradients, VisionTransformer) {
  check_model(tiny_vit(), 0.0);
}

TEST(ModelGradients, VisionTransformerGeluTanh) {
  ModelConfig c = tiny_vit();
  c.activation = "gelu_tanh";
  check_model(c, 0.0);
}

// model.activation reaches the ViT's MLP: gelu_tanh gives another loss than gelu, and a config
// written in code (ModelConfig's relu default) builds the exact GELU.
TEST(ModelGradients, VitActivationSelectsTheGelu) {
  const auto loss_of = [](const std::string& activation) {
    ModelConfig c = tiny_vit();
    c.activation = activation;
    auto model = make_model(c, DType::f64, 0.0, 5);
    std::mt19937_64 rng(3);
    for (Parameter* p : model->parameters())
      p->value.copy_from(testing::random_tensor(p->value.shape(), rng, 0.5));
    Batch batch;
    synthetic_image_batch(batch, c, 3, 9, 0, DType::f64);
    return model->forward(batch, ForwardContext{false, 0, 0, 0});
  };
  const double gelu = loss_of("gelu"), tanh = loss_of("gelu_tanh");
  EXPECT_NE(gelu, tanh);
  EXPECT_NEAR(gelu, tanh, 1e-2 * std::abs(gelu));
  EXPECT_EQ(loss_of("relu"), gelu);
}

// The ViT's last layer runs EncoderLayer::forward_first_rows: it must give the full layer's
// first rows, and backward_first_rows the full backward's dx and parameter gradients for a dy
// that is zero outside the first rows (both norms; keys padded by lengths too).
TEST(ModelGradients, EncoderLayerFirstRowsMatchFullLayer) {
  for (const char* norm : {"pre", "post"}) {
    ModelConfig c;
    c.d_model = 8;
    c.heads = 2;
    c.d_ff = 12;
    c.norm = norm;
    c.activation = "gelu";
    DropoutIds ids;
    EncoderLayer layer("layer", c, ids, DType::f64);
    ParameterList params;
    layer.collect_parameters(params);
    std::mt19937_64 rng(11);
    for (Parameter* p : params) p->value.copy_from(testing::random_tensor(p->value.shape(), rng));
    const std::int64_t B = 3, T = 5, d = c.d_model;
    Tensor x = testing::random_tensor({B, T, d}, rng),
           dy_first = testing::random_tensor({B, 1, d}, rng);
    Tensor lengths = Tensor::empty({B}, DType::i32);
    for (std::int64_t b = 0; b < B; ++b)
      lengths.data<std::int32_t>()[b] = static_cast<std::int32_t>(T - b);
    const ForwardContext ctx{false, 1, 1, 0};

    for (Parameter* p : params) p->grad.zero_();
    const Tensor full = layer.forward(x, lengths, ctx).clone();
    Tensor dy_full = Tensor::zeros({B, T, d}, DType::f64);
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t i = 0; i < d; ++i)
        dy_full.data<double>()[b * T * d + i] = dy_first.data<double>()[b * d + i];
    const Tensor dx_full = layer.backward(dy_full).clone();
    std::vector<Tensor> grads_full;
    for (Parameter* p : params) grads_full.push_back(p->grad.clone());

    for (Parameter* p : params) p->grad.zero_();
    const Tensor first = layer.forward_first_rows(x, lengths, ctx);
    ASSERT_EQ(first.shape(), (Shape{B, 1, d}));
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t i = 0; i < d; ++i)
        EXPECT_NEAR(first.data<double>()[b * d + i], full.data<double>()[b * T * d + i], 1e-12)
            << norm;
    const Tensor dx = layer.backward_first_rows(dy_first);
    ASSERT_EQ(dx.shape(), (Shape{B, T, d}));
    for (std::int64_t i = 0; i < dx.numel(); ++i)
      EXPECT_NEAR(dx.data<double>()[i], dx_full.data<double>()[i], 1e-12) << norm << " dx " << i;
    for (std::size_t k = 0; k < params.size(); ++k)
      for (std::int64_t i = 0; i < params[k]->grad.numel(); ++i)
        EXPECT_NEAR(params[k]->grad.data<double>()[i], grads_full[k].data<double>()[i], 1e-12)
            << norm << " " << params[k]->name;
  }
}

TEST(ModelGradients, ParameterNamesAreCanonical) {
  auto shared = make_model(tiny_translation("pre", true, "relu", "sinusoidal"), DType::f32, 0, 1);
  std::vector<std::string> names;
  for (Parameter* p : shared->parameters()) names.push_back(p->name);
  auto has = [&](const std::string& n) {
    return std::find(names.begin(), names.end(), n) != names.end();
  };
  EXPECT_TRUE(has("embed.weight"));
  EXPECT_TRUE(has("encoder.layers.1.self_attn.o_proj.bias"));
  EXPECT_TRUE(has("decoder.layers.0.cross_attn.k_proj.weight"));
  EXPECT_TRUE(has("decoder.layers.1.norm3.weight"));
  EXPECT_TRUE(has("encoder.norm.weight"));
  EXPECT_TRUE(has("decoder.norm.bias"));
  EXPECT_FALSE(has("output.weight"));

  auto separate = make_model(tiny_translation("post", false, "gelu", "learned"), DType::f32, 0, 1);
  names.clear();
  for (Parameter* p : separate->parameters()) names.push_back(p->name);
  EXPECT_TRUE(has("src_embed.weight"));
  EXPECT_TRUE(has("tgt_embed.weight"));
  EXPECT_TRUE(has("output.weight"));
  EXPECT_TRUE(has("src_pos.weight"));
  EXPECT_FALSE(has("encoder.norm.weight"));

  auto vit = make_model(tiny_vit(), DType::f32, 0, 1);
  names.clear();
  for (Parameter* p : vit->parameters()) names.push_back(p->name);
  for (const char* n : {"patch_embed.weight", "patch_embed.bias", "cls_token", "pos_embed",
                        "encoder.layers.1.ffn.fc2.weight", "norm.weight", "head.bias"})
    EXPECT_TRUE(has(n)) << n;
  for (Parameter* p : vit->parameters()) {
    const bool decays = p->name.ends_with(".weight") && p->name.find("norm") == std::string::npos;
    EXPECT_EQ(p->decay, decays) << p->name;
  }
}

TEST(ModelGradients, InitialisationIsSeededAndKeyedByName) {
  auto a = make_model(tiny_vit(), DType::f32, 0, 7);
  auto b = make_model(tiny_vit(), DType::f32, 0, 7);
  auto c = make_model(tiny_vit(), DType::f32, 0, 8);
  bool any_difference = false;
  for (std::size_t i = 0; i < a->parameters().size(); ++i) {
    const Tensor& x = a->parameters()[i]->value;
    const Tensor& y = b->parameters()[i]->value;
    const Tensor& z = c->parameters()[i]->value;
    for (std::int64_t k = 0; k < x.numel(); ++k) {
      EXPECT_EQ(x.data<float>()[k], y.data<float>()[k]);
      any_difference |= x.data<float>()[k] != z.data<float>()[k];
    }
  }
  EXPECT_TRUE(any_difference);
  // LayerNorm starts as the identity.
  for (Parameter* p : a->parameters()) {
    if (p->name == "norm.weight") {
      EXPECT_EQ(p->value.data<float>()[0], 1.0f);
    }
  }
}

TEST(ModelGradients, WarmTrainingStepAllocatesNothing) {
  auto model = make_model(tiny_translation("pre", true, "relu", "sinusoidal"), DType::f32, 0.1, 1);
  Batch batch;
  synthetic_copy_batch(batch, model->config(), 4, 5, 1, 0);
  auto step = [&](std::uint64_t s) {
    model->zero_grad();
    model->forward(batch, ForwardContext{true, 1, s, 0});
    model->backward(1.0 / static_cast<double>(model->counted_targets()));
  };
  step(1);
  step(2);
  const std::int64_t before = BufferPool::instance(Device::cpu).system_allocations();
  step(3);
  step(4);
  EXPECT_EQ(BufferPool::instance(Device::cpu).system_allocations(), before);
}

// Ragged batches (sentence lengths change from step to step): once each length was seen, a
// step takes every buffer from the pool's cache, although layers hand their buffers back
// after each backward and the next step asks for other sizes.
TEST(ModelGradients, RaggedWarmStepsAllocateNothing) {
  auto model = make_model(tiny_translation("pre", true, "gelu", "sinusoidal"), DType::f32, 0.1, 1);
  Batch batch;
  auto step = [&](std::uint64_t s, std::int64_t max_tokens) {
    synthetic_copy_batch(batch, model->config(), 4, max_tokens, 1, static_cast<std::int64_t>(s));
    model->zero_grad();
    model->forward(batch, ForwardContext{true, 1, s, 0});
    model->backward(1.0 / static_cast<double>(model->counted_targets()));
  };
  const std::int64_t lengths[] = {3, 6, 4, 5};
  std::uint64_t s = 1;
  for (int round = 0; round < 2; ++round)
    for (std::int64_t t : lengths) step(s++, t);
  const std::int64_t before = BufferPool::instance(Device::cpu).system_allocations();
  for (int round = 0; round < 3; ++round)
    for (std::int64_t t : {5, 3, 6, 4}) step(s++, t);
  EXPECT_EQ(BufferPool::instance(Device::cpu).system_allocations(), before);
}

// train.recompute: selective and full give bitwise the gradients of none, on every model
// variant, with dropout active (masks recomputed from their keys); two steps each, so the
// second runs on buffers given back to the pool and taken again. And they need less memory:
// the pool's peak over a step, on a model where the attention probabilities are a large share.
struct RecomputeRun {
  std::vector<std::vector<float>> grads;
  double loss = 0;
  std::size_t step_peak = 0;  // bytes above what the model holds before its first forward
};

RecomputeRun run_with_recompute(const ModelConfig& config, Recompute mode, std::int64_t B,
                                std::int64_t max_tokens) {
  auto model = make_model(config, DType::f32, 0.1, 5);
  BufferPool& pool = BufferPool::instance(Device::cpu);
  Batch batch;
  RecomputeRun run;
  const std::size_t base = pool.in_use_bytes();
  for (std::uint64_t step = 1; step <= 2; ++step) {
    if (config.type == "vit")
      synthetic_image_batch(batch, config, B, 9, 0, DType::f32);
    else
      synthetic_copy_batch(batch, config, B, max_tokens, 9, 0);
    model->zero_grad();
    pool.reset_peak();
    const ForwardContext ctx{true, 17, step, 0, mode};
    run.loss = model->forward(batch, ctx);
    model->backward(1.0 / static_cast<double>(model->counted_targets()));
    run.step_peak = std::max(run.step_peak, pool.peak_in_use_bytes() - base);
  }
  for (Parameter* p : model->parameters()) {
    const float* g = p->grad.data<float>();
    run.grads.emplace_back(g, g + p->grad.numel());
  }
  return run;
}

TEST(ModelGradients, RecomputationGivesTheSameGradients) {
  const ModelConfig configs[] = {tiny_translation("pre", true, "relu", "sinusoidal"),
                                 tiny_translation("post", false, "gelu", "learned"), tiny_vit(3)};
  for (const ModelConfig& config : configs) {
    const RecomputeRun none = run_with_recompute(config, Recompute::none, 3, 6);
    for (Recompute mode : {Recompute::selective, Recompute::full}) {
      const RecomputeRun other = run_with_recompute(config, mode, 3, 6);
      EXPECT_EQ(other.loss, none.loss) << config.type << " " << config.norm;
      ASSERT_EQ(other.grads.size(), none.grads.size());
      for (std::size_t k = 0; k < none.grads.size(); ++k)
        EXPECT_EQ(other.grads[k], none.grads[k]) << config.type << " " << config.norm << " mode "
                                                 << static_cast<int>(mode) << " parameter " << k;
    }
  }
}

TEST(ModelGradients, RecomputationLowersPeakMemory) {
  // Long sequences, few features: the [B, H, T, T] probabilities dominate the activations. Six
  // layers: full recomputation holds one layer's activations at a time, and shows its
  // advantage over selective (every layer's, without the probabilities) once there are a few.
  ModelConfig config = tiny_translation("pre", true, "gelu", "sinusoidal", 6);
  config.heads = 4;
  config.max_len = 66;  // 64 tokens plus BOS or EOS
  const std::size_t none = run_with_recompute(config, Recompute::none, 8, 64).step_peak;
  const std::size_t selective = run_with_recompute(config, Recompute::selective, 8, 64).step_peak;
  const std::size_t full = run_with_recompute(config, Recompute::full, 8, 64).step_peak;
  std::printf("step peak above the model: none %.2f MiB, selective %.2f MiB, full %.2f MiB\n",
              none / 1048576.0, selective / 1048576.0, full / 1048576.0);
  EXPECT_LT(selective, none * 0.8) << none << " " << selective;
  EXPECT_LT(full, selective) << selective << " " << full;
}

// Backward hands each layer's activations and gradient buffers back to the pool as it leaves
// the layer, so the step's peak is the forward's activations plus a few gradients, not both
// whole sets: at most 1.35x what the forward holds at its end (about 2x when layers kept
// their buffers to the end of the step), on both model kinds.
TEST(ModelGradients, BackwardReleasesEachLayersBuffers) {
  ModelConfig translation = tiny_translation("pre", true, "gelu", "sinusoidal", 4);
  translation.d_model = 64;
  translation.d_ff = 256;
  ModelConfig vit = tiny_vit(4);
  vit.d_model = 64;
  vit.d_ff = 256;
  vit.image_size = 24;
  for (const ModelConfig& config : {translation, vit}) {
    auto model = make_model(config, DType::f32, 0.1, 5);
    BufferPool& pool = BufferPool::instance(Device::cpu);
    Batch batch;
    if (config.type == "vit")
      synthetic_image_batch(batch, config, 16, 9, 0, DType::f32);
    else
      synthetic_copy_batch(batch, config, 16, 6, 9, 0);
    for (std::uint64_t step = 1; step <= 2; ++step) {
      const std::size_t base = pool.in_use_bytes();
      model->zero_grad();
      pool.reset_peak();
      model->forward(batch, ForwardContext{true, 17, step, 0});
      const std::size_t forward = pool.in_use_bytes() - base;
      model->backward(1.0 / static_cast<double>(model->counted_targets()));
      const std::size_t peak = pool.peak_in_use_bytes() - base;
      std::printf("%s step %d: forward holds %.2f MiB, step peak %.2f MiB (%.2fx)\n",
                  config.type.c_str(), static_cast<int>(step), forward / 1048576.0,
                  peak / 1048576.0, static_cast<double>(peak) / forward);
      EXPECT_LE(peak, forward * 1.35) << config.type << " step " << step;
    }
  }
}

// Model::train_flops against bench/flops.py's counts (the numbers below are its output):
// the reference ViT as executed (last layer on the CLS row), and an encoder-decoder batch
// without padding, where ours and flops.py's count agree term by term.
TEST(ModelGradients, TrainFlopsMatchTheBenchmarkFormula) {
  ModelConfig vit = tiny_vit();
  vit.image_size = 28;
  vit.patch_size = 4;
  vit.channels = 1;
  vit.d_model = 192;
  vit.heads = 3;
  vit.d_ff = 768;
  vit.encoder_layers = 6;
  vit.num_classes = 10;
  auto vit_model = make_model(vit, DType::f32, 0.0, 1);
  Batch images;
  synthetic_image_batch(images, vit, 2, 1, 0, DType::f32);
  EXPECT_DOUBLE_EQ(vit_model->train_flops(images), 2 * 717712128.0);

  ModelConfig mt = tiny_translation("pre", true, "relu", "sinusoidal", 3);
  mt.d_model = 256;
  mt.heads = 4;
  mt.d_ff = 1024;
  mt.vocab_size = 8000;
  mt.dropout = 0;
  auto mt_model = make_model(mt, DType::f32, 0.0, 1);
  Batch batch;
  const std::int64_t B = 2, L = 5;
  batch.src = Tensor::empty({B, L}, DType::i32);
  batch.tgt_in = Tensor::empty({B, L}, DType::i32);
  batch.tgt_out = Tensor::empty({B, L}, DType::i32);
  batch.src_len = Tensor::empty({B}, DType::i32);
  batch.tgt_len = Tensor::empty({B}, DType::i32);
  for (std::int64_t i = 0; i < B * L; ++i) {
    batch.src.data<std::int32_t>()[i] = 5 + static_cast<std::int32_t>(i);
    batch.tgt_in.data<std::int32_t>()[i] = 6 + static_cast<std::int32_t>(i);
    batch.tgt_out.data<std::int32_t>()[i] = 7 + static_cast<std::int32_t>(i);
  }
  for (std::int64_t b = 0; b < B; ++b)
    batch.src_len.data<std::int32_t>()[b] = batch.tgt_len.data<std::int32_t>()[b] = L;
  mt_model->forward(batch, ForwardContext{});
  ASSERT_EQ(mt_model->counted_targets(), B * L);
  EXPECT_DOUBLE_EQ(mt_model->train_flops(batch), 454563840.0);
}

// The pool's in-use and peak counters behind the metrics' peak_memory_mb: a tensor counts the
// block it holds (its size class, 4,032 bytes for 4,000, or a cached block up to half as
// large again).
TEST(ModelGradients, BufferPoolCountsBytesInUseAndPeak) {
  BufferPool& pool = BufferPool::instance(Device::cpu);
  const std::size_t base = pool.in_use_bytes();
  std::size_t peak_with_both = 0;
  {
    Tensor a = Tensor::empty({1000}, DType::f32);
    EXPECT_GE(a.capacity(), 4032u);
    EXPECT_LE(a.capacity(), 4032u * 3 / 2);
    EXPECT_EQ(pool.in_use_bytes(), base + a.capacity());
    {
      Tensor b = Tensor::empty({1 << 20}, DType::f32);  // 4 MiB
      EXPECT_EQ(pool.in_use_bytes(), base + a.capacity() + b.capacity());
      peak_with_both = pool.peak_in_use_bytes();
      EXPECT_GE(peak_with_both, pool.in_use_bytes());
      Tensor shared = b.view({1024, 1024});  // a view holds no new bytes
      EXPECT_EQ(pool.in_use_bytes(), base + a.capacity() + b.capacity());
    }
    EXPECT_EQ(pool.in_use_bytes(), base + a.capacity());
  }
  EXPECT_EQ(pool.in_use_bytes(), base);
  EXPECT_EQ(pool.peak_in_use_bytes(), peak_with_both);  // the peak stays
}

}  // namespace
}  // namespace tr
