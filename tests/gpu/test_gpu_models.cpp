// Both models on CUDA against the CPU, fp32: the loss and every parameter gradient of one
// training forward/backward (dropout and label smoothing on: the masks are bit-identical), and
// 100 AdamW steps with clipping whose loss curve follows the CPU's.
//
// Bounds: the loss and each gradient tensor within 1e-5 of the CPU's, relative to the CPU
// tensor's largest magnitude (max |g_cuda - g_cpu| <= 1e-5 max |g_cpu|): the GEMMs sum in
// another order (cuBLASLt vs OpenBLAS), so values differ by rounding only. The GEMMs run in
// full fp32 (CUBLAS_COMPUTE_32F, never TF32; NVIDIA_TF32_OVERRIDE=0 is set as well). Training:
// every one of the 100 step losses within 2e-3 relative of the CPU's (rounding differences
// grow through the updates; a wrong kernel shows at step 1, which must agree to 1e-5), and
// the curve must fall. The same under train.precision: bf16 (bf16 block activations and
// products of bf16 operands) on both sides: the CPU's bf16 run rounds at the same points, so
// the bounds are bf16's rounding steps, not the distance from fp32.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/tiny_models.h"
#include "gpu/cuda_test.h"
#include "layers/cpu/bf16.h"
#include "layers/cuda/kernels.h"
#include "layers/device.h"
#include "layers/op_profile.h"
#include "layers/ops.h"
#include "models/model.h"
#include "trainer/device_residency.h"
#include "trainer/grad_clip.h"
#include "trainer/optimizer.h"
#include "trainer/synthetic_data.h"

namespace tr {
namespace {

ModelConfig vit_config() {
  return testing::small_vit();
}

ModelConfig translation_config(const std::string& norm, bool shared, const std::string& pos) {
  return testing::small_translation(norm, shared, pos);
}

void make_batch(Batch& batch, const ModelConfig& c, std::int64_t index) {
  if (c.type == "vit")
    synthetic_image_batch(batch, c, 6, 11, index, DType::f32);
  else
    synthetic_copy_batch(batch, c, 6, 10, 11, index);
}

// max |a - b| / max(max |b|, floor) over a tensor (a on CUDA, b on the host).
double error_to_max(const Tensor& a, const Tensor& b, double floor) {
  const std::vector<float> x = gpu_test::to_host_vector<float>(a);
  const std::vector<float> y = gpu_test::to_host_vector<float>(b);
  double diff = 0, scale = floor;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double d = std::abs(static_cast<double>(x[i]) - y[i]);
    if (!(d <= diff)) diff = std::isnan(d) ? INFINITY : d;
    scale = std::max(scale, std::abs(static_cast<double>(y[i])));
  }
  return scale > 0 ? diff / scale : diff;
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (float v : gpu_test::to_host_vector<float>(t)) m = std::max(m, std::abs(double{v}));
  return m;
}

// The first few elements, for a failure message.
std::string head(const Tensor& t) {
  const std::vector<float> x = gpu_test::to_host_vector<float>(t);
  std::string s;
  for (std::size_t i = 0; i < std::min<std::size_t>(x.size(), 6); ++i)
    s += std::to_string(x[i]) + " ";
  return s;
}

class GpuModels : public ::testing::Test {
 protected:
  void SetUp() override { setenv("NVIDIA_TF32_OVERRIDE", "0", 1); }

  // The same model (same seed) on the host and on CUDA.
  static std::pair<std::unique_ptr<Model>, std::unique_ptr<Model>> twins(const ModelConfig& c) {
    auto host = make_model(c, DType::f32, 0.1, 7);
    auto device = make_model(c, DType::f32, 0.1, 7);
    device->to_device(Device::cuda);
    return {std::move(host), std::move(device)};
  }

  // fp32: rounding only. bf16, both sides bf16: a bf16 output can round one step apart (2^-8)
  // where the summation orders differ, and that compounds through a dozen layers: the loss
  // within 5e-3, each gradient tensor within 3e-2 of its scale, the curve within 3e-2.
  struct Tolerance {
    double loss, gradient, curve;
  };
  static constexpr Tolerance kFp32{1e-5, 1e-5, 2e-3};
  static constexpr Tolerance kBf16{5e-3, 3e-2, 3e-2};

  // Runs the check under train.precision `precision` on CUDA and on the CPU twin alike (bf16
  // activations, and bf16 products on both devices; under bf16 the GPU's attention is flash
  // attention, so the CPU's goes through the flash twin: the same rounding points); fp32 again
  // afterwards.
  template <typename Check>
  static void under(MatmulPrecision precision, Check&& check) {
    struct Reset {
      ~Reset() {
        set_training_precision(MatmulPrecision::fp32, Device::cuda);
        cpu::set_bf16_products(false);
        ops::set_flash_attention_on_cpu(false);
      }
    } reset;
    set_training_precision(precision, Device::cuda);
    cpu::set_bf16_products(precision == MatmulPrecision::bf16);
    ops::set_flash_attention_on_cpu(precision == MatmulPrecision::bf16);
    check();
  }

  static void check_loss_and_gradients(const ModelConfig& c, const Tolerance& tol = kFp32) {
    auto [host, device] = twins(c);
    Batch hb, db;
    make_batch(hb, c, 0);
    upload_batch(db, hb, Device::cuda);
    const ForwardContext ctx{true, 17, 3, 0};
    const double lh = host->forward(hb, ctx), ld = device->forward(db, ctx);
    ASSERT_EQ(host->counted_targets(), device->counted_targets());
    EXPECT_LE(std::abs(ld - lh), tol.loss * std::abs(lh)) << "loss cpu " << lh << " cuda " << ld;
    const double scale = 1.0 / static_cast<double>(host->counted_targets());
    host->backward(scale);
    device->backward(scale);
    const ParameterList& ph = host->parameters();
    const ParameterList& pd = device->parameters();
    ASSERT_EQ(ph.size(), pd.size());
    // The key projection's bias has a gradient of zero in exact arithmetic (softmax ignores a
    // constant added to a row of scores): both sides hold rounding noise only, which under
    // bf16 (P rounded before dP) is as large as the bias's own entries. It must stay noise,
    // under 1e-2 of the model's largest gradient; other tensors' errors are measured against
    // that too where their own entries are smaller.
    double largest = 0;
    for (const Parameter* p : ph) largest = std::max(largest, max_abs(p->grad));
    double worst = 0;
    std::string worst_name;
    for (std::size_t i = 0; i < ph.size(); ++i) {
      ASSERT_EQ(pd[i]->grad.device(), Device::cuda) << pd[i]->name;
      if (ph[i]->name.ends_with("k_proj.bias")) {
        EXPECT_LE(max_abs(pd[i]->grad), 1e-2 * largest) << pd[i]->name << " (cuda)";
        EXPECT_LE(max_abs(ph[i]->grad), 1e-2 * largest) << ph[i]->name << " (cpu)";
        continue;
      }
      const double e = error_to_max(pd[i]->grad, ph[i]->grad, 1e-2 * largest);
      EXPECT_LE(e, tol.gradient) << ph[i]->name << " " << shape_string(ph[i]->grad.shape())
                                 << ": cuda " << head(pd[i]->grad) << " cpu " << head(ph[i]->grad);
      if (e > worst) worst = e, worst_name = ph[i]->name;
    }
    std::printf("loss error %.3g, worst gradient error %.3g (%s)\n", std::abs(ld - lh) / lh, worst,
                worst_name.c_str());
  }

  static void check_training_curve(const ModelConfig& c, const Tolerance& tol = kFp32) {
    auto [host, device] = twins(c);
    AdamW opt_h(host->parameters(), AdamWConfig{});
    AdamW opt_d(device->parameters(), AdamWConfig{});
    Batch hb, db;
    std::vector<double> lh, ld;
    for (std::int64_t step = 1; step <= 100; ++step) {
      make_batch(hb, c, step % 4);  // four batches, seen over and over: the loss must fall
      upload_batch(db, hb, Device::cuda);
      const ForwardContext ctx{true, 17, static_cast<std::uint64_t>(step), 0};
      for (auto* m : {host.get(), device.get()}) m->zero_grad();
      const double sh = host->forward(hb, ctx), sd = device->forward(db, ctx);
      const double scale = 1.0 / static_cast<double>(host->counted_targets());
      host->backward(scale);
      device->backward(scale);
      clip_grad_norm(host->parameters(), 1.0);
      clip_grad_norm(device->parameters(), 1.0);
      opt_h.step(1e-3);
      opt_d.step(1e-3);
      lh.push_back(sh * scale);
      ld.push_back(sd * scale);
    }
    EXPECT_LE(std::abs(ld[0] - lh[0]), tol.loss * lh[0]);
    double worst = 0;
    for (std::size_t k = 0; k < lh.size(); ++k) {
      EXPECT_LE(std::abs(ld[k] - lh[k]), tol.curve * lh[k])
          << "step " << k + 1 << ": cpu " << lh[k] << " cuda " << ld[k];
      worst = std::max(worst, std::abs(ld[k] - lh[k]) / lh[k]);
    }
    std::printf("loss %.4f -> %.4f (cpu %.4f), worst step difference %.3g\n", ld.front(), ld.back(),
                lh.back(), worst);
    EXPECT_LT(ld.back(), 0.9 * ld.front()) << "the CUDA run did not learn";
  }

  // The ops one training step (forward and backward) of `c` ran on the device, with their calls.
  static std::vector<op_profile::Entry> profiled_device_step(const ModelConfig& c) {
    auto [host, device] = twins(c);
    Batch hb, db;
    make_batch(hb, c, 0);
    upload_batch(db, hb, Device::cuda);
    op_profile::reset();
    op_profile::enable(true, [] { synchronize_device(Device::cuda); });
    device->forward(db, ForwardContext{true, 17, 3, 0});
    device->backward(1.0 / static_cast<double>(device->counted_targets()));
    op_profile::enable(false, nullptr);
    return op_profile::totals();
  }

  // One training step of both models on the device under the op profile: the attention is the
  // flash kernels in both precisions (no materialised probabilities), and every op finds a
  // kernel for its operands' dtypes (no widening of bf16 into f32 copies, which the profile
  // counts).
  static void check_device_step_kernels() {
    for (const ModelConfig& c : {vit_config(), translation_config("pre", true, "sinusoidal")}) {
      long flash_forward = 0, flash_backward = 0, materialised = 0, widened = 0;
      std::string ops;  // every op the step ran, for a failure message
      for (const op_profile::Entry& e : profiled_device_step(c)) {
        if (e.name == "flash_attention_forward") flash_forward = e.calls;
        if (e.name == "flash_attention_backward") flash_backward = e.calls;
        if (e.name == "attention_forward" || e.name == "attention_backward")
          materialised += e.calls;
        if (e.name == "widened_bf16_on_cuda") widened = e.calls;
        ops += e.name + " x" + std::to_string(e.calls) + "\n";
      }
      EXPECT_GT(flash_forward, 0) << c.type;
      EXPECT_EQ(flash_backward, flash_forward) << c.type;
      EXPECT_EQ(materialised, 0) << c.type;
      EXPECT_EQ(widened, 0) << c.type << ", the step's ops:\n" << ops;
    }
  }
};

TEST_F(GpuModels, VitLossAndGradientsMatchCpu) {
  TR_REQUIRE_CUDA();
  check_loss_and_gradients(vit_config());
}

TEST_F(GpuModels, EncoderDecoderPreLnLossAndGradientsMatchCpu) {
  TR_REQUIRE_CUDA();
  check_loss_and_gradients(translation_config("pre", true, "sinusoidal"));
}

TEST_F(GpuModels, EncoderDecoderPostLnLossAndGradientsMatchCpu) {
  TR_REQUIRE_CUDA();
  check_loss_and_gradients(translation_config("post", false, "learned"));
}

TEST_F(GpuModels, Bf16LossAndGradientsFollowCpu) {
  TR_REQUIRE_CUDA();
  under(MatmulPrecision::bf16, [] {
    // GELU models only: under rounding a ReLU input near 0 flips sides and moves whole rows
    // of a gradient (0.22 measured on an H100); the ReLU model's bf16 run is the curve test's.
    ModelConfig pre_gelu = translation_config("pre", true, "sinusoidal");
    pre_gelu.activation = "gelu";
    check_loss_and_gradients(vit_config(), kBf16);
    check_loss_and_gradients(pre_gelu, kBf16);
    check_loss_and_gradients(translation_config("post", false, "learned"), kBf16);
  });
}

// model.activation: gelu_tanh, whose feed-forward layers run cuBLASLt's GELU epilogues on the
// device: loss and gradients as the CPU's in both precisions, and every feed-forward layer of a
// step took the fused ops (no GELU pass of its own).
TEST_F(GpuModels, GeluTanhLossAndGradientsMatchCpu) {
  TR_REQUIRE_CUDA();
  ModelConfig vit = vit_config(), translation = translation_config("pre", true, "sinusoidal");
  vit.activation = translation.activation = "gelu_tanh";
  check_loss_and_gradients(vit);
  check_loss_and_gradients(translation);
  under(MatmulPrecision::bf16, [&] {
    check_loss_and_gradients(vit, kBf16);
    check_loss_and_gradients(translation, kBf16);
  });
  long fused_forward = 0, fused_backward = 0, separate = 0;
  for (const op_profile::Entry& e : profiled_device_step(vit)) {
    if (e.name == "linear_gelu_tanh_forward") fused_forward = e.calls;
    if (e.name == "linear_backward_through_gelu_tanh") fused_backward = e.calls;
    if (e.name == "activation_forward" || e.name == "activation_backward") separate += e.calls;
  }
  EXPECT_EQ(fused_forward, vit.encoder_layers);
  EXPECT_EQ(fused_backward, vit.encoder_layers);
  EXPECT_EQ(separate, 0);
}

// The comparisons above mean something only if the device runs took the intended kernels.
TEST_F(GpuModels, DeviceRunsTakeTheFlashAndBf16Kernels) {
  TR_REQUIRE_CUDA();
  check_device_step_kernels();  // fp32
  under(MatmulPrecision::bf16, [] { check_device_step_kernels(); });
}

TEST_F(GpuModels, Bf16TrainingFollowsCpuFor100Steps) {
  TR_REQUIRE_CUDA();
  under(MatmulPrecision::bf16, [] {
    check_training_curve(vit_config(), kBf16);
    check_training_curve(translation_config("pre", true, "sinusoidal"), kBf16);
  });
}

// train.attention_dropout: fused: cuDNN draws the attention masks (not the CPU's, so no curve
// to follow): every attention of a step must run there (the profile's record), and the run
// must repeat itself bit for bit (the same seeds draw the same masks), differ from the exact
// one, and learn as it does. Heads of 32 (the tiny models' 8 are not what cuDNN is for).
TEST_F(GpuModels, Bf16FusedAttentionDropoutLearnsLikeExact) {
  TR_REQUIRE_CUDA();
  if (!cuda::cudnn_attention_available())
    GTEST_SKIP() << "cuDNN not used here: " << cuda::cudnn_attention_status();
  under(MatmulPrecision::bf16, [] {
    ModelConfig c = translation_config("pre", true, "sinusoidal");
    c.d_model = 128;
    c.heads = 4;
    // Every shape planned at its first call, however many plans this process made before (a
    // spent budget would keep shapes on the keyed masks), so that both fused runs draw in cuDNN
    // from their first step (at a second call, the first run's first step would not).
    struct PolicyReset {
      ~PolicyReset() { cuda::set_cudnn_plan_policy(2, 60); }
    } policy_reset;
    cuda::set_cudnn_plan_policy(1, 1e9);
    long drawn_forward = 0, drawn_backward = 0, flash_forward = 0;
    const auto losses = [&](bool fused) {
      struct Reset {
        ~Reset() { ops::set_fused_attention_dropout(false); }
      } reset;
      ops::set_fused_attention_dropout(fused);
      std::unique_ptr<Model> device = twins(c).second;
      AdamW opt(device->parameters(), AdamWConfig{});
      Batch hb, db;
      std::vector<double> out;
      for (std::int64_t step = 1; step <= 60; ++step) {
        make_batch(hb, c, step % 4);
        upload_batch(db, hb, Device::cuda);
        device->zero_grad();
        const bool profiled = fused && step == 60;  // plans exist by then
        if (profiled) {
          op_profile::reset();
          op_profile::enable(true, [] { synchronize_device(Device::cuda); });
        }
        const double sum =
            device->forward(db, ForwardContext{true, 17, static_cast<std::uint64_t>(step), 0});
        const double scale = 1.0 / static_cast<double>(device->counted_targets());
        device->backward(scale);
        if (profiled) {
          op_profile::enable(false, nullptr);
          for (const op_profile::Entry& e : op_profile::totals()) {
            if (e.name == "flash_attention_forward: cuDNN, drawn dropout") drawn_forward = e.calls;
            if (e.name == "flash_attention_backward: cuDNN, drawn dropout")
              drawn_backward = e.calls;
            if (e.name == "flash_attention_forward") flash_forward = e.calls;
          }
        }
        clip_grad_norm(device->parameters(), 1.0);
        opt.step(1e-3);
        out.push_back(sum * scale);
      }
      return out;
    };
    const std::vector<double> exact = losses(false), fused = losses(true), again = losses(true);
    EXPECT_GT(drawn_forward, 0) << "no attention drew its mask in cuDNN: "
                                << cuda::cudnn_attention_last_problem();
    EXPECT_EQ(drawn_backward, drawn_forward);
    // Every training attention: one that fell back to the keyed masks runs the plain flash op.
    EXPECT_EQ(flash_forward, 0) << "attentions that did not draw in cuDNN: "
                                << cuda::cudnn_attention_last_problem();
    EXPECT_EQ(fused, again) << "the same seeds drew other masks";
    EXPECT_NE(fused, exact) << "no attention drew its mask in cuDNN";
    const auto tail = [](const std::vector<double>& v) {
      double sum = 0;
      for (std::size_t k = v.size() - 10; k < v.size(); ++k) sum += v[k];
      return sum / 10;
    };
    std::printf("loss %.4f -> %.4f fused, %.4f -> %.4f exact (means of the last 10 steps)\n",
                fused.front(), tail(fused), exact.front(), tail(exact));
    EXPECT_LT(tail(fused), 0.9 * fused.front()) << "the fused run did not learn";
    EXPECT_NEAR(tail(fused), tail(exact), 0.1 * tail(exact));
  });
}

// train.recompute: full with train.attention_dropout: fused, where a shape's cuDNN plan is made
// at its second call: the first step's forward (call 1) uses the keyed masks, and its replay in
// backward (call 2) must too, not draw a mask the loss never saw. So the first step takes no
// drawn attention and its gradients are the exact mode's (bf16 rounding apart); the second
// step draws in both forwards and the backward.
TEST_F(GpuModels, FullRecomputeReplaysTheFirstForwardsDropoutMasks) {
  TR_REQUIRE_CUDA();
  if (!cuda::cudnn_attention_available())
    GTEST_SKIP() << "cuDNN not used here: " << cuda::cudnn_attention_status();
  under(MatmulPrecision::bf16, [] {
    ModelConfig c = translation_config("pre", true, "sinusoidal");
    c.d_model = 96;  // 3 heads of 32: shapes no other test here has planned
    c.heads = 3;
    struct Reset {
      ~Reset() {
        cuda::set_cudnn_plan_policy(2, 60);
        ops::set_fused_attention_dropout(false);
      }
    } reset;
    cuda::set_cudnn_plan_policy(2, 1e9);
    Batch hb, db;
    make_batch(hb, c, 0);
    upload_batch(db, hb, Device::cuda);
    const auto step = [&](Model& model, std::uint64_t index, Recompute recompute) {
      model.zero_grad();
      op_profile::reset();
      op_profile::enable(true, [] { synchronize_device(Device::cuda); });
      model.forward(db, ForwardContext{true, 17, index, 0, recompute});
      model.backward(1.0 / static_cast<double>(model.counted_targets()));
      op_profile::enable(false, nullptr);
      long drawn_forward = 0, drawn_backward = 0;
      for (const op_profile::Entry& e : op_profile::totals()) {
        if (e.name == "flash_attention_forward: cuDNN, drawn dropout") drawn_forward = e.calls;
        if (e.name == "flash_attention_backward: cuDNN, drawn dropout") drawn_backward = e.calls;
      }
      return std::pair{drawn_forward, drawn_backward};
    };
    ops::set_fused_attention_dropout(true);
    std::unique_ptr<Model> recomputed = twins(c).second;
    EXPECT_EQ(step(*recomputed, 1, Recompute::full), std::pair(0L, 0L))
        << "the first step drew in cuDNN: its replay did not repeat the first forward";
    std::vector<Tensor> grads;
    for (Parameter* p : recomputed->parameters()) grads.push_back(p->grad.clone());
    const auto [drawn_forward, drawn_backward] = step(*recomputed, 2, Recompute::full);
    EXPECT_GT(drawn_backward, 0) << cuda::cudnn_attention_last_problem();
    EXPECT_EQ(drawn_forward, 2 * drawn_backward);  // the forward and its replay

    ops::set_fused_attention_dropout(false);
    std::unique_ptr<Model> exact = twins(c).second;
    step(*exact, 1, Recompute::none);
    for (std::size_t i = 0; i < grads.size(); ++i) {
      const Parameter& p = *exact->parameters()[i];
      EXPECT_LE(error_to_max(grads[i], p.grad, 1e-6), kBf16.gradient) << p.name;
    }
  });
}

TEST_F(GpuModels, VitTrainingFollowsCpuFor100Steps) {
  TR_REQUIRE_CUDA();
  check_training_curve(vit_config());
}

TEST_F(GpuModels, EncoderDecoderTrainingFollowsCpuFor100Steps) {
  TR_REQUIRE_CUDA();
  check_training_curve(translation_config("pre", true, "sinusoidal"));
}

// A model moved to CUDA and back holds exactly the values it had (checkpoints go this way).
TEST_F(GpuModels, DeviceRoundTripKeepsParameters) {
  TR_REQUIRE_CUDA();
  auto model = make_model(translation_config("pre", true, "sinusoidal"), DType::f32, 0.0, 3);
  std::vector<std::vector<float>> before;
  for (Parameter* p : model->parameters())
    before.push_back(gpu_test::to_host_vector<float>(p->value));
  model->to_device(Device::cuda);
  EXPECT_EQ(model->device(), Device::cuda);
  model->to_device(Device::cpu);
  for (std::size_t i = 0; i < before.size(); ++i)
    EXPECT_EQ(gpu_test::to_host_vector<float>(model->parameters()[i]->value), before[i]);
}

}  // namespace
}  // namespace tr
