// Incremental decoding reproduces the full decode: the logits of every step equal
// EncoderDecoder::decode's at that position, for every model variant and after reordering rows.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <tuple>

#include "models/decoder_cache.h"

namespace tr {
namespace {

struct Variant {
  std::string norm, positional;
  bool shared;
  DType dtype;
  std::string activation;
};

std::string variant_name(const testing::TestParamInfo<Variant>& info) {
  const Variant& v = info.param;
  return v.norm + "_" + v.positional + (v.shared ? "_shared" : "_separate") +
         (v.dtype == DType::f64 ? "_f64" : "_f32") + "_" + v.activation;
}

ModelConfig small_config(const Variant& v) {
  ModelConfig c;
  c.d_model = 16;
  c.heads = 4;
  c.d_ff = 24;
  c.encoder_layers = 2;
  c.decoder_layers = 2;
  c.norm = v.norm;
  c.positional = v.positional;
  c.share_embeddings = v.shared;
  c.activation = v.activation;
  c.vocab_size = 13;
  c.max_len = 24;
  return c;
}

// i32 [rows, cols] from a row-major list.
Tensor ids(std::int64_t rows, std::int64_t cols, const std::vector<std::int32_t>& values) {
  Tensor t = Tensor::empty({rows, cols}, DType::i32);
  for (std::size_t i = 0; i < values.size(); ++i) t.data<std::int32_t>()[i] = values[i];
  return t;
}

double value_at(const Tensor& t, std::int64_t i) {
  return t.dtype() == DType::f64 ? t.data<double>()[i] : t.data<float>()[i];
}

class DecoderCacheTest : public testing::TestWithParam<Variant> {
 protected:
  void SetUp() override {
    config_ = small_config(GetParam());
    model_ = make_model(config_, GetParam().dtype, 0.0, /*seed=*/7);
    model_ptr_ = dynamic_cast<EncoderDecoder*>(model_.get());
    ASSERT_NE(model_ptr_, nullptr);
    tol_ = GetParam().dtype == DType::f64 ? 1e-12 : 1e-5;
  }

  // Full-decode logits [B, T, V] of tgt against the encoding of src (padded, lengths given).
  Tensor full_logits(const Tensor& src, const Tensor& src_len, const Tensor& tgt) {
    const std::int64_t B = tgt.dim(0), T = tgt.dim(1);
    Tensor tgt_len = Tensor::empty({B}, DType::i32);
    for (std::int64_t b = 0; b < B; ++b) tgt_len.data<std::int32_t>()[b] = static_cast<int>(T);
    Tensor memory = model_ptr_->encode(src, src_len, ForwardContext{}).clone();
    return model_ptr_->decode(tgt, tgt_len, memory, src_len, ForwardContext{}).clone();
  }

  // max |step logits - full logits at position t| over rows and vocabulary.
  double max_diff(const Tensor& step, const Tensor& full, std::int64_t t) {
    const std::int64_t B = full.dim(0), T = full.dim(1), V = full.dim(2);
    EXPECT_EQ(step.dim(0), B);
    EXPECT_EQ(step.dim(1), V);
    double worst = 0;
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t v = 0; v < V; ++v)
        worst = std::max(worst,
                         std::abs(value_at(step, b * V + v) - value_at(full, (b * T + t) * V + v)));
    return worst;
  }

  ModelConfig config_;
  std::unique_ptr<Model> model_;
  EncoderDecoder* model_ptr_ = nullptr;
  double tol_ = 0;
};

TEST_P(DecoderCacheTest, StepLogitsEqualFullDecode) {
  // Three sources of different lengths (right-padded with pad 0) and 20 target positions:
  // enough to make the self-attention cache grow past its first allocation (16 positions).
  constexpr std::int64_t T = 20;
  const Tensor src = ids(3, 5, {5, 6, 7, 8, 2, 9, 2, 0, 0, 0, 4, 10, 11, 2, 0});
  const Tensor src_len = ids(3, 1, {5, 2, 4}).view({3});
  std::vector<std::int32_t> tgt_values;
  for (std::int64_t b = 0; b < 3; ++b)
    for (std::int64_t t = 0; t < T; ++t)
      tgt_values.push_back(t == 0 ? 1 : static_cast<std::int32_t>(3 + (7 * t + 5 * b) % 10));
  const Tensor tgt = ids(3, T, tgt_values);
  const Tensor full = full_logits(src, src_len, tgt);

  Tensor memory = model_ptr_->encode(src, src_len, ForwardContext{}).clone();
  DecoderCache cache(*model_ptr_, memory, src_len, /*capacity=*/T);
  for (std::int64_t t = 0; t < T; ++t) {
    std::vector<std::int32_t> tokens;
    for (std::int64_t b = 0; b < 3; ++b) tokens.push_back(tgt.data<std::int32_t>()[b * T + t]);
    EXPECT_LE(max_diff(cache.step(tokens), full, t), tol_) << "position " << t;
    EXPECT_EQ(cache.length(), t + 1);
  }
}

TEST_P(DecoderCacheTest, ReorderFollowsGatheredRows) {
  const Tensor src = ids(2, 4, {5, 6, 7, 2, 9, 2, 0, 0});
  const Tensor src_len = ids(2, 1, {4, 2}).view({2});
  // After two steps on rows (a, b), rows become (b, a, a) and continue with their own tokens.
  const std::vector<std::int32_t> a = {1, 5, 8, 9, 4}, b = {1, 7, 3, 6, 6}, a2 = {1, 5, 8, 3, 12};
  Tensor memory = model_ptr_->encode(src, src_len, ForwardContext{}).clone();
  DecoderCache cache(*model_ptr_, memory, src_len, /*capacity=*/5);
  cache.step({a[0], b[0]});
  cache.step({a[1], b[1]});
  cache.reorder({1, 0, 0});
  EXPECT_EQ(cache.rows(), 3);

  // The reference: the full decode of the gathered batch.
  const Tensor src3 = ids(3, 4, {9, 2, 0, 0, 5, 6, 7, 2, 5, 6, 7, 2});
  const Tensor src_len3 = ids(3, 1, {2, 4, 4}).view({3});
  std::vector<std::int32_t> tgt3;
  for (const auto* row : {&b, &a, &a2}) tgt3.insert(tgt3.end(), row->begin(), row->end());
  const Tensor full = full_logits(src3, src_len3, ids(3, 5, tgt3));
  for (std::int64_t t = 2; t < 5; ++t) {
    const Tensor& logits = cache.step({b[t], a[t], a2[t]});
    EXPECT_LE(max_diff(logits, full, t), tol_) << "position " << t;
  }
  // Dropping rows works too: keep only the last one.
  cache.reorder({2});
  EXPECT_EQ(cache.rows(), 1);
}

TEST_P(DecoderCacheTest, CapacityIsEnforced) {
  const Tensor src = ids(1, 2, {5, 2});
  const Tensor src_len = ids(1, 1, {2}).view({1});
  Tensor memory = model_ptr_->encode(src, src_len, ForwardContext{}).clone();
  DecoderCache cache(*model_ptr_, memory, src_len, /*capacity=*/1);
  cache.step({1});
  EXPECT_THROW(cache.step({5}), InternalError);
  EXPECT_THROW(DecoderCache(*model_ptr_, memory, src_len, config_.max_len + 1), InternalError);
}

std::vector<Variant> all_variants() {
  std::vector<Variant> out;
  for (const char* norm : {"pre", "post"})
    for (const char* positional : {"sinusoidal", "learned"})
      for (bool shared : {true, false})
        for (DType dtype : {DType::f32, DType::f64})
          // Every activation without multiplying the variants: ReLU (fused into fc1's product)
          // with shared embeddings, as the translation configs have them; the exact GELU and
          // its tanh approximation with separate ones.
          out.push_back({norm, positional, shared, dtype,
                         shared                                 ? "relu"
                         : std::string(positional) == "learned" ? "gelu_tanh"
                                                                : "gelu"});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Variants, DecoderCacheTest, testing::ValuesIn(all_variants()),
                         variant_name);

}  // namespace
}  // namespace tr
