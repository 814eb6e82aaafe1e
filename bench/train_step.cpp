// bench/train_step: training throughput of one model shape on synthetic data, in isolation from
// the data loader. One step = zero_grad, forward, backward, gradient clipping (norm 1.0) and
// AdamW, as `trainer train` does per step.
//
//   train_step vit|encdec [shape options of bench_common.h] [--steps 10] [--warmup 2]
//              [--recompute none|selective|full] [--device cpu|cuda] [--precision fp32|bf16]
//              [--profile] [--flash] [--attention-dropout exact|fused]
//   (defaults: the reference shapes of the CPU-speed benchmark, no recomputation, CPU, fp32;
//   bf16: as train.precision: bf16: the matrix products take bf16 operands, and on the CPU
//   the blocks' activations are bf16)
// On CUDA the model, its gradients, AdamW's state and the batch live on the GPU, as
// `trainer train` with train.device: cuda runs them; the clock stops after a device sync.
//
// Prints images/s (ViT) or target tokens/s (encoder-decoder), then one JSON line for bench/run:
// {"model", "throughput", "unit", "steps", "seconds", "peak_rss_mb", "peak_tensor_mb",
//  "peak_requested_mb", "device", "peak_tflops_fp32", "peak_tflops_bf16"} (peak_tensor_mb: the
// trainer's peak_memory_mb, the buffer pool's peak on the device plus, on a GPU, the ops'
// scratch; peak_requested_mb: the pool's peak of what the tensors asked for, without the
// blocks' rounding to size classes and without the scratch; device: "cpu" or the GPU's
// name, whose data-sheet peaks follow, 0 where trainer/device_peak.h does not know it). Under
// callgrind, pass
// `--toggle-collect=tr_bench_timed_steps` so that only the timed steps are counted.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include "bench/bench_common.h"
#include "layers/device.h"
#include "layers/op_profile.h"
#include "layers/ops.h"
#include "models/model.h"
#include "trainer/device_peak.h"
#include "trainer/device_residency.h"
#include "trainer/grad_clip.h"
#include "trainer/optimizer.h"

using tr::Batch;
using tr::DType;
using tr::Tensor;
using namespace tr::bench;

// Kept out of line under a plain C name so callgrind can toggle collection on it.
extern "C" __attribute__((noinline)) double tr_bench_timed_steps(
    tr::Model* model, tr::Optimizer* opt, const Batch* batch, std::int64_t first,
    std::int64_t steps, tr::Recompute recompute) {
  double loss = 0;
  for (std::int64_t s = first; s < first + steps; ++s) {
    opt->zero_grad();
    const tr::ForwardContext ctx{true, 1, static_cast<std::uint64_t>(s + 1), s * batch->size(),
                                 recompute};
    loss = model->forward(*batch, ctx);
    model->backward(1.0 / static_cast<double>(model->counted_targets()));
    tr::clip_grad_norm(model->parameters(), 1.0);
    opt->step(1e-4);
  }
  return loss;
}

// --profile: two more steps with every device op timed alone (layers/op_profile.h), printed as
// milliseconds per step, largest first; "(between ops)" is the step's time outside them.
void print_op_profile(tr::Model* model, tr::Optimizer* opt, const Batch* batch, tr::Device device,
                      tr::Recompute recompute) {
  const std::int64_t steps = 2;
  tr::op_profile::reset();
  tr::op_profile::enable(true, [] { tr::synchronize_device(tr::Device::cuda); });
  tr::synchronize_device(device);
  const auto t0 = std::chrono::steady_clock::now();
  tr_bench_timed_steps(model, opt, batch, 1000, steps, recompute);
  tr::synchronize_device(device);
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  tr::op_profile::enable(false, nullptr);
  double timed = 0;
  std::printf("profile (ms per step, ops timed alone):\n");
  for (const auto& e : tr::op_profile::totals()) {
    if (e.depth == 0) timed += e.seconds;
    std::printf("  %-36s %9.3f  %5.1f%%  %6.1f calls\n", ((e.depth ? "  - " : "") + e.name).c_str(),
                1e3 * e.seconds / steps, 100 * e.seconds / total,
                static_cast<double>(e.calls) / steps);
  }
  std::printf("  %-36s %9.3f  %5.1f%%\n", "(between ops)", 1e3 * (total - timed) / steps,
              100 * (total - timed) / total);
}

int main(int argc, char** argv) {
  if (argc < 2 || (std::strcmp(argv[1], "vit") != 0 && std::strcmp(argv[1], "encdec") != 0)) {
    std::fprintf(stderr, "usage: train_step vit|encdec [--d N] [--layers N] [--heads N] ...\n");
    return 2;
  }
  const bool vit = std::strcmp(argv[1], "vit") == 0;
  const std::int64_t steps = arg_int(argc, argv, "--steps", 10);
  const std::int64_t warmup = arg_int(argc, argv, "--warmup", 2);
  const std::optional<tr::Recompute> recompute =
      tr::recompute_from_name(arg_string(argc, argv, "--recompute", "none"));
  if (!recompute) {
    std::fprintf(stderr, "train_step: --recompute: expected none, selective or full\n");
    return 2;
  }
  const std::string device_name = arg_string(argc, argv, "--device", "cpu");
  if (device_name != "cpu" && device_name != "cuda") {
    std::fprintf(stderr, "train_step: --device: expected cpu or cuda\n");
    return 2;
  }
  const tr::Device device = device_name == "cuda" ? tr::Device::cuda : tr::Device::cpu;
  const std::string precision = arg_string(argc, argv, "--precision", "fp32");
  if (precision != "fp32" && precision != "bf16") {
    std::fprintf(stderr, "train_step: --precision: expected fp32 or bf16\n");
    return 2;
  }
  if (device == tr::Device::cuda) {
    if (tr::cuda_device_count() == 0) {
      std::fprintf(stderr, "train_step: --device cuda: %s\n",
                   tr::cuda_unavailable_reason().c_str());
      return 2;
    }
    tr::select_cuda_device(0);
  }
  const tr::MatmulPrecision matmul =
      precision == "bf16" ? tr::MatmulPrecision::bf16 : tr::MatmulPrecision::fp32;
  if (device == tr::Device::cuda) {
    const std::string problem = tr::cuda_device_problem(matmul);
    if (!problem.empty()) {
      std::fprintf(stderr, "train_step: --device cuda: %s\n", problem.c_str());
      return 2;
    }
  }
  tr::set_training_precision(matmul, device);
  // --attention-dropout fused: train.attention_dropout: fused (masks drawn inside cuDNN).
  const std::string attention_dropout = arg_string(argc, argv, "--attention-dropout", "exact");
  if (attention_dropout != "exact" && attention_dropout != "fused") {
    std::fprintf(stderr, "train_step: --attention-dropout: expected exact or fused\n");
    return 2;
  }
  tr::ops::set_fused_attention_dropout(attention_dropout == "fused");
  // --flash on the CPU: the flash attention path a GPU takes (no probabilities kept), so that
  // the CPU's memory figures show what a GPU step holds.
  if (has_flag(argc, argv, "--flash")) tr::ops::set_flash_attention_on_cpu(true);
  Batch host_batch, device_batch;
  const tr::ModelConfig c = reference_model(argc, argv, 1, host_batch);
  const std::int64_t B = host_batch.size();
  tr::validate_model_config(c);
  auto model = tr::make_model(c, DType::f32, 0.1, 1);
  if (device != tr::Device::cpu) {
    model->to_device(device);
    tr::upload_batch(device_batch, host_batch, device);
  }
  const Batch& batch = device != tr::Device::cpu ? device_batch : host_batch;
  tr::AdamW opt(model->parameters(), tr::AdamWConfig{0.9, 0.999, 1e-8, 0.05});
  tr_bench_timed_steps(model.get(), &opt, &batch, 0, warmup, *recompute);
  tr::synchronize_device(device);
  const auto t0 = std::chrono::steady_clock::now();
  const double loss = tr_bench_timed_steps(model.get(), &opt, &batch, warmup, steps, *recompute);
  tr::synchronize_device(device);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::int64_t targets = model->counted_targets();
  std::printf(
      "%s d=%lld layers=%lld heads=%lld ff=%lld batch=%lld: %lld steps in %.3f s, "
      "%.1f %s/s, loss %.6f\n",
      argv[1], (long long)c.d_model, (long long)c.encoder_layers, (long long)c.heads,
      (long long)c.d_ff, (long long)B, (long long)steps, s,
      static_cast<double>(targets) * steps / s, vit ? "images" : "target tokens", loss);
  if (vit) {
    const std::int64_t tokens = (c.image_size / c.patch_size) * (c.image_size / c.patch_size) + 1;
    std::printf("  %.0f tokens/s\n", static_cast<double>(B * tokens) * steps / s);
  }
  if (has_flag(argc, argv, "--profile"))
    print_op_profile(model.get(), &opt, &batch, device, recompute.value());
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  // On a GPU its name and dense peaks (the trainer's table) for bench/gpu_compare.py's MFU.
  const std::string gpu = device == tr::Device::cuda ? tr::current_cuda_device_name() : "";
  std::printf(
      "{\"model\": \"%s\", \"throughput\": %.3f, \"unit\": \"%s\", \"steps\": %lld, "
      "\"seconds\": %.4f, \"loss\": %.6f, \"tokens_per_step\": %lld, \"peak_rss_mb\": %.1f, "
      "\"peak_tensor_mb\": %.1f, \"peak_requested_mb\": %.1f, \"device\": \"%s\", "
      "\"peak_tflops_fp32\": %.1f, \"peak_tflops_bf16\": %.1f}\n",
      argv[1], static_cast<double>(targets) * steps / s, vit ? "images/s" : "target tokens/s",
      (long long)steps, s, loss, (long long)targets, usage.ru_maxrss / 1024.0,
      static_cast<double>(tr::peak_memory_bytes(device)) / (1024.0 * 1024.0),
      static_cast<double>(tr::BufferPool::instance(device).peak_requested_bytes()) /
          (1024.0 * 1024.0),
      gpu.empty() ? "cpu" : gpu.c_str(), tr::dense_peak_tflops(gpu, "fp32"),
      tr::dense_peak_tflops(gpu, "bf16"));
  return 0;
}
