// Inference on CUDA against the CPU, the same model (same seed) on both: the decoder cache's
// step logits (through appends, cache growth and reorders, which run gather_rows' kernel on the
// GPU), greedy and beam-search translations, and evaluation's loss and accuracy (the argmax on
// the device). fp32, so the devices differ by rounding only: logits within 1e-5 of their
// largest magnitude, the same tokens, the loss within 1e-5 relative and the same accuracy.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <memory>
#include <vector>

#include "common/tiny_models.h"
#include "gpu/cuda_test.h"
#include "layers/device.h"
#include "layers/ops.h"
#include "models/decoder_cache.h"
#include "models/encoder_decoder.h"
#include "trainer/accuracy.h"
#include "trainer/decoding.h"
#include "trainer/device_residency.h"
#include "trainer/synthetic_data.h"

namespace tr {
namespace {

class GpuDecoding : public ::testing::Test {
 protected:
  void SetUp() override {
    TR_REQUIRE_CUDA();
    setenv("NVIDIA_TF32_OVERRIDE", "0", 1);
    config_ = testing::small_translation("pre", true, "sinusoidal");
    config_.max_len = 20;
    host_ = make_model(config_, DType::f32, 0.1, 7);
    device_ = make_model(config_, DType::f32, 0.1, 7);
    device_->to_device(Device::cuda);
    synthetic_copy_batch(batch_, config_, 5, 9, 11, 0);
  }

  EncoderDecoder& host() { return static_cast<EncoderDecoder&>(*host_); }
  EncoderDecoder& device() { return static_cast<EncoderDecoder&>(*device_); }

  ModelConfig config_;
  std::unique_ptr<Model> host_, device_;
  Batch batch_;
};

// max |a - b| / max |b| of a CUDA tensor against a host one.
double error_to_largest(const Tensor& device, const Tensor& host) {
  return testing::max_error_to_largest(gpu_test::to_host_vector<float>(device),
                                       gpu_test::to_host_vector<float>(host));
}

TEST_F(GpuDecoding, CacheStepsEqualTheCpu) {
  const Tensor memory_h = host().encode(batch_.src, batch_.src_len, ForwardContext{});
  const Tensor memory_d =
      device().encode(to_device(batch_.src, Device::cuda), to_device(batch_.src_len, Device::cuda),
                      ForwardContext{});
  // Capacity 19: the cache starts at 16 positions and grows once.
  DecoderCache cache_h(host(), memory_h, batch_.src_len, 19);
  DecoderCache cache_d(device(), memory_d, batch_.src_len, 19);
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(cache_h.rows()), config_.bos_id);
  for (int step = 0; step < 18; ++step) {
    if (step == 5) {  // rows repeated, dropped and permuted, as beam search does
      const std::vector<std::int64_t> parent = {2, 0, 0, 4, 1, 3};
      cache_h.reorder(parent);
      cache_d.reorder(parent);
      tokens.resize(parent.size());
    }
    const Tensor& logits_h = cache_h.step(tokens);
    const Tensor& logits_d = cache_d.step(tokens);
    ASSERT_EQ(logits_d.device(), Device::cuda);
    EXPECT_LE(error_to_largest(logits_d, logits_h), 1e-5) << "step " << step;
    for (std::size_t r = 0; r < tokens.size(); ++r)  // fixed next tokens, the same on both
      tokens[r] = static_cast<std::int32_t>(4 + (step * 3 + r) % (config_.vocab_size - 4));
  }
}

TEST_F(GpuDecoding, TranslationsEqualTheCpu) {
  for (const int beam : {1, 3}) {
    DecodeOptions o;
    o.beam = beam;
    o.bos_id = config_.bos_id;
    o.eos_id = config_.eos_id;
    o.pad_id = config_.pad_id;
    EXPECT_EQ(translate_batch(device(), batch_, o), translate_batch(host(), batch_, o))
        << "beam " << beam;
  }
}

TEST_F(GpuDecoding, LossAndAccuracyEqualTheCpu) {
  Batch on_device;
  upload_batch(on_device, batch_, Device::cuda);
  const double loss_h = host_->forward(batch_, ForwardContext{});
  const double loss_d = device_->forward(on_device, ForwardContext{});
  EXPECT_LE(std::abs(loss_d - loss_h), 1e-5 * std::abs(loss_h));
  const AccuracyCount a_h = count_correct(host_->logits(), batch_.tgt_out, config_.pad_id);
  const AccuracyCount a_d = count_correct(device_->logits(), batch_.tgt_out, config_.pad_id);
  EXPECT_EQ(a_d.counted, a_h.counted);
  EXPECT_EQ(a_d.correct, a_h.correct);

  Tensor best_h, best_d;
  ops::argmax_rows(best_h, host_->logits());
  ops::argmax_rows(best_d, device_->logits());
  EXPECT_EQ(gpu_test::to_host_vector<std::int32_t>(best_d),
            gpu_test::to_host_vector<std::int32_t>(best_h));
}

}  // namespace
}  // namespace tr
