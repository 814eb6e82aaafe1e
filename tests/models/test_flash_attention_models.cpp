// The flash attention path of MultiHeadAttention (what CUDA takes under bf16), run on the CPU
// through the CPU twin (ops::set_flash_attention_on_cpu): both models, every attention kind
// (self, causal, cross with padded keys, the ViT's first-rows last layer), dropout, and every
// recomputation mode give the materialised path's loss and gradients (fp64, 1e-10), two steps
// each so that the second runs on buffers taken back from the pool; and the step's peak memory
// falls, the probabilities no longer being kept.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include "common/tiny_models.h"
#include "layers/ops.h"
#include "layers/tensor.h"
#include "models/model.h"
#include "trainer/synthetic_data.h"

namespace tr {
namespace {

using testing::tiny_translation;
using testing::tiny_vit;

struct StepResult {
  std::vector<std::vector<double>> grads;
  double loss = 0;
  std::size_t step_peak = 0;  // bytes above what the model holds before its first forward
};

// Two training steps' forward/backward under `flash`; the second step's loss and gradients.
StepResult run(const ModelConfig& config, bool flash, Recompute mode, std::int64_t B,
               std::int64_t max_tokens, DType dtype = DType::f64) {
  struct Reset {
    ~Reset() { ops::set_flash_attention_on_cpu(false); }
  } reset;
  ops::set_flash_attention_on_cpu(flash);
  auto model = make_model(config, dtype, 0.1, 5);
  BufferPool& pool = BufferPool::instance(Device::cpu);
  const std::size_t base = pool.in_use_bytes();
  Batch batch;
  StepResult r;
  for (std::uint64_t step = 1; step <= 2; ++step) {
    if (config.type == "vit")
      synthetic_image_batch(batch, config, B, 9, static_cast<std::int64_t>(step), dtype);
    else
      synthetic_copy_batch(batch, config, B, max_tokens, 9, static_cast<std::int64_t>(step));
    model->zero_grad();
    pool.reset_peak();
    r.loss = model->forward(batch, ForwardContext{true, 17, step, 0, mode});
    model->backward(1.0 / static_cast<double>(model->counted_targets()));
    r.step_peak = std::max(r.step_peak, pool.peak_in_use_bytes() - base);
  }
  for (Parameter* p : model->parameters()) {
    std::vector<double> g(static_cast<std::size_t>(p->grad.numel()));
    for (std::size_t i = 0; i < g.size(); ++i)
      g[i] = dtype == DType::f64 ? p->grad.data<double>()[i] : p->grad.data<float>()[i];
    r.grads.push_back(std::move(g));
  }
  return r;
}

TEST(FlashAttentionModels, GiveTheMaterialisedLossAndGradients) {
  const ModelConfig configs[] = {tiny_translation("pre", true, "relu", "sinusoidal"),
                                 tiny_translation("post", false, "gelu", "learned"), tiny_vit(3)};
  for (const ModelConfig& config : configs) {
    const StepResult reference = run(config, false, Recompute::none, 3, 6);
    for (Recompute mode : {Recompute::none, Recompute::selective, Recompute::full}) {
      const StepResult flash = run(config, true, mode, 3, 6);
      const std::string what =
          config.type + " " + config.norm + " recompute " + std::to_string(static_cast<int>(mode));
      EXPECT_NEAR(flash.loss, reference.loss, 1e-10 * std::abs(reference.loss)) << what;
      // The flash path did run: it holds no [B, H, Tq, Tk] probabilities.
      if (mode == Recompute::none) {
        EXPECT_LT(flash.step_peak, reference.step_peak) << what;
      }
      ASSERT_EQ(flash.grads.size(), reference.grads.size());
      // Against 1e-2 of the model's largest gradient at least: the key projection's bias has an
      // exact gradient of zero (softmax ignores a constant added to a row), so it holds rounding
      // noise only.
      double largest = 0;
      for (const std::vector<double>& g : reference.grads)
        for (double x : g) largest = std::max(largest, std::abs(x));
      for (std::size_t k = 0; k < reference.grads.size(); ++k) {
        double diff = 0, mag = 0;
        for (std::size_t i = 0; i < reference.grads[k].size(); ++i) {
          diff = std::max(diff, std::abs(flash.grads[k][i] - reference.grads[k][i]));
          mag = std::max(mag, std::abs(reference.grads[k][i]));
        }
        EXPECT_LE(diff, 1e-10 * std::max(mag, 1e-2 * largest)) << what << " parameter " << k;
      }
    }
  }
}

TEST(FlashAttentionModels, KeepNoProbabilities) {
  // Long sequences, few features: the [B, H, T, T] probabilities dominate the activations.
  ModelConfig config = tiny_translation("pre", true, "gelu", "sinusoidal", 3);
  config.heads = 4;
  config.max_len = 66;  // 64 tokens plus BOS or EOS
  const std::size_t materialised = run(config, false, Recompute::none, 8, 64, DType::f32).step_peak;
  const std::size_t flash = run(config, true, Recompute::none, 8, 64, DType::f32).step_peak;
  std::printf("step peak above the model: materialised %.2f MiB, flash %.2f MiB\n",
              materialised / 1048576.0, flash / 1048576.0);
  EXPECT_LT(flash, materialised * 0.8) << materialised << " " << flash;
}

}  // namespace
}  // namespace tr
