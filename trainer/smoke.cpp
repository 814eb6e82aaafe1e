#include "trainer/smoke.h"

#include <chrono>
#include <cstdio>

#include "models/model.h"
#include "trainer/accuracy.h"
#include "trainer/device_residency.h"
#include "trainer/grad_clip.h"
#include "trainer/lr_schedule.h"
#include "trainer/model_config_yaml.h"
#include "trainer/optimizer.h"
#include "trainer/synthetic_data.h"
#include "trainer/weights_file.h"

namespace tr {

namespace {

ModelConfig smoke_config(const std::string& type) {
  ModelConfig c;
  c.type = type;
  c.d_model = 64;
  c.heads = 4;
  c.d_ff = 128;
  c.encoder_layers = c.decoder_layers = 2;
  if (type == "vit") {
    c.image_size = 16;
    c.patch_size = 4;
    c.channels = 1;
    c.num_classes = 4;
    c.activation = "gelu";
  } else if (type == "encoder_decoder") {
    c.vocab_size = 24;
    c.max_len = 16;
  } else {
    throw UserError("--model: expected vit or encoder_decoder, got '" + type + "'");
  }
  return c;
}

constexpr std::int64_t kMaxTokens = 10;
constexpr std::int64_t kHeldOut = 1 << 30;  // sample indices for evaluation, never trained on

void fill_batch(Batch& batch, const ModelConfig& c, std::int64_t B, std::uint64_t seed,
                std::int64_t index) {
  if (c.type == "vit")
    synthetic_image_batch(batch, c, B, seed, index, DType::f32);
  else
    synthetic_copy_batch(batch, c, B, kMaxTokens, seed, index);
}

}  // namespace

double run_smoke(const SmokeOptions& o) {
  if (o.steps <= 0) throw UserError("--steps: expected a positive integer");
  if (o.batch <= 0) throw UserError("--batch: expected a positive integer");
  const ModelConfig config = smoke_config(o.model);
  auto model = make_model(config, DType::f32, /*label_smoothing=*/0.0, o.seed);
  if (!o.init.empty()) read_weights(o.init, model->parameters());
  // On a GPU the model, its gradients and AdamW's state live there; batches are uploaded.
  const Device device = inference_device(o.device, "--device");
  model->to_device(device);
  AdamW optimizer(model->parameters(), AdamWConfig{0.9, 0.98, 1e-8, 0.01});
  ScheduleConfig schedule;
  schedule.type = ScheduleType::cosine;
  schedule.lr = o.lr;
  schedule.warmup_steps = std::max<std::int64_t>(1, o.steps / 10);
  schedule.min_lr = o.lr / 10;
  schedule.total_steps = o.steps;
  validate_schedule(schedule);

  const std::string where =
      device == Device::cpu ? std::string("the CPU") : current_cuda_device_name();
  std::printf("smoke: %s on %s, %zu parameter tensors, %lld steps of %lld samples\n",
              o.model.c_str(), where.c_str(), model->parameters().size(),
              static_cast<long long>(o.steps), static_cast<long long>(o.batch));
  Batch batch, on_device;
  // The batch the model reads: the host one, or its device copy.
  const auto upload = [&]() -> const Batch& {
    if (device == Device::cpu) return batch;
    upload_batch(on_device, batch, device);
    return on_device;
  };
  const auto start = std::chrono::steady_clock::now();
  for (std::int64_t step = 1; step <= o.steps; ++step) {
    fill_batch(batch, config, o.batch, o.seed, (step - 1) * o.batch);
    optimizer.zero_grad();
    const ForwardContext ctx{true, o.seed, static_cast<std::uint64_t>(step), (step - 1) * o.batch};
    const double loss_sum = model->forward(upload(), ctx);
    const std::int64_t count = model->counted_targets();
    model->backward(1.0 / static_cast<double>(count));
    const double grad_norm = clip_grad_norm(model->parameters(), 1.0);
    const double lr = learning_rate(schedule, step);
    optimizer.step(lr);
    if (step % o.log_every == 0 || step == o.steps) {
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::printf("step %5lld | loss %.4f | lr %.2e | gnorm %.3f | %.0f samples/s\n",
                  static_cast<long long>(step), loss_sum / count, lr, grad_norm,
                  step * o.batch / seconds);
      std::fflush(stdout);
    }
  }

  AccuracyCount total;
  for (std::int64_t i = 0; i < 8; ++i) {
    fill_batch(batch, config, o.batch, o.seed, kHeldOut + i * o.batch);
    model->forward(upload(), ForwardContext{});
    const AccuracyCount acc =
        count_correct(model->logits(), config.type == "vit" ? batch.labels : batch.tgt_out,
                      config.type == "vit" ? -1 : config.pad_id);
    total.correct += acc.correct;
    total.counted += acc.counted;
  }
  std::printf("held-out accuracy: %.2f%% (%lld of %lld %s)\n", 100 * total.rate(),
              static_cast<long long>(total.correct), static_cast<long long>(total.counted),
              config.type == "vit" ? "images" : "tokens");
  if (!o.save.empty()) {
    model->to_device(Device::cpu);  // the file is written from the host
    write_weights(o.save, config.type, model_config_to_yaml_text(config), model->parameters());
    std::printf("weights written to %s\n", o.save.c_str());
  }
  return total.rate();
}

}  // namespace tr
