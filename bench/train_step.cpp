// bench/train_step: training throughput of one model shape on synthetic data, in isolation from
// the data loader. One step = zero_grad, forward, backward, gradient clipping (norm 1.0) and
// AdamW, as `trainer train` does per step.
//
//   train_step vit    [--d 96] [--layers 4] [--heads 4] [--ff 4*d] [--patch 4] [--batch 128]
//   train_step encdec [--d 256] [--layers 3] [--heads 4] [--ff 1024] [--batch 64] [--len 32]
//                     [--vocab 8000] [--dropout 0.1]
//   common: [--steps 10] [--warmup 2] [--dropout P]
//
// Prints images/s (ViT) or target tokens/s (encoder-decoder), then one JSON line for bench/run:
// {"model", "throughput", "unit", "steps", "seconds", "peak_rss_mb"}. Under callgrind, pass
// `--toggle-collect=tr_bench_timed_steps` so that only the timed steps are counted.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "models/model.h"
#include "trainer/grad_clip.h"
#include "trainer/optimizer.h"

namespace {

using tr::Batch;
using tr::DType;
using tr::Tensor;

std::int64_t arg_int(int argc, char** argv, const char* name, std::int64_t fallback) {
  for (int i = 2; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return std::atoll(argv[i + 1]);
  return fallback;
}
double arg_double(int argc, char** argv, const char* name, double fallback) {
  for (int i = 2; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return std::atof(argv[i + 1]);
  return fallback;
}

// Small LCG: deterministic synthetic inputs without depending on trainer/ helpers.
struct Lcg {
  std::uint64_t s;
  std::uint32_t next() {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<std::uint32_t>(s >> 33);
  }
  float uniform() { return static_cast<float>(next()) / 2147483648.0f - 1.0f; }
};

void make_vit_batch(Batch& b, const tr::ModelConfig& c, std::int64_t B) {
  Lcg rng{42};
  b.images = Tensor::empty({B, c.channels, c.image_size, c.image_size}, DType::f32);
  float* px = b.images.data<float>();
  for (std::int64_t i = 0; i < b.images.numel(); ++i) px[i] = rng.uniform();
  b.labels = Tensor::empty({B}, DType::i32);
  for (std::int64_t i = 0; i < B; ++i)
    b.labels.data<std::int32_t>()[i] = static_cast<std::int32_t>(rng.next() % c.num_classes);
}

void make_translation_batch(Batch& b, const tr::ModelConfig& c, std::int64_t B, std::int64_t L) {
  Lcg rng{7};
  auto ids = [&](Tensor& t) { t = Tensor::empty({B, L}, DType::i32); };
  ids(b.src);
  ids(b.tgt_in);
  ids(b.tgt_out);
  b.src_len = Tensor::empty({B}, DType::i32);
  b.tgt_len = Tensor::empty({B}, DType::i32);
  for (std::int64_t s = 0; s < B; ++s) {
    // Lengths between L/2 and L, padded on the right: realistic ragged batches.
    const std::int64_t ls = L / 2 + rng.next() % (L / 2 + 1);
    const std::int64_t lt = L / 2 + rng.next() % (L / 2 + 1);
    b.src_len.data<std::int32_t>()[s] = static_cast<std::int32_t>(ls);
    b.tgt_len.data<std::int32_t>()[s] = static_cast<std::int32_t>(lt);
    for (std::int64_t t = 0; t < L; ++t) {
      const auto tok = [&] {
        return static_cast<std::int32_t>(3 + rng.next() % (c.vocab_size - 3));
      };
      b.src.data<std::int32_t>()[s * L + t] = t < ls ? tok() : c.pad_id;
      b.tgt_in.data<std::int32_t>()[s * L + t] = t == 0 ? c.bos_id : (t < lt ? tok() : c.pad_id);
      b.tgt_out.data<std::int32_t>()[s * L + t] = t < lt ? tok() : c.pad_id;
    }
  }
}

}  // namespace

// Kept out of line under a plain C name so callgrind can toggle collection on it.
extern "C" __attribute__((noinline)) double tr_bench_timed_steps(tr::Model* model,
                                                                 tr::Optimizer* opt,
                                                                 const Batch* batch,
                                                                 std::int64_t first,
                                                                 std::int64_t steps) {
  double loss = 0;
  for (std::int64_t s = first; s < first + steps; ++s) {
    opt->zero_grad();
    const tr::ForwardContext ctx{true, 1, static_cast<std::uint64_t>(s + 1), s * batch->size()};
    loss = model->forward(*batch, ctx);
    model->backward(1.0 / static_cast<double>(model->counted_targets()));
    tr::clip_grad_norm(model->parameters(), 1.0);
    opt->step(1e-4);
  }
  return loss;
}

int main(int argc, char** argv) {
  if (argc < 2 || (std::strcmp(argv[1], "vit") != 0 && std::strcmp(argv[1], "encdec") != 0)) {
    std::fprintf(stderr, "usage: train_step vit|encdec [--d N] [--layers N] [--heads N] ...\n");
    return 2;
  }
  const bool vit = std::strcmp(argv[1], "vit") == 0;
  tr::ModelConfig c;
  c.type = vit ? "vit" : "encoder_decoder";
  c.d_model = arg_int(argc, argv, "--d", vit ? 96 : 256);
  c.heads = arg_int(argc, argv, "--heads", 4);
  c.d_ff = arg_int(argc, argv, "--ff", vit ? 4 * c.d_model : 1024);
  c.encoder_layers = c.decoder_layers = arg_int(argc, argv, "--layers", vit ? 4 : 3);
  c.dropout = arg_double(argc, argv, "--dropout", 0.1);
  const std::int64_t B = arg_int(argc, argv, "--batch", vit ? 128 : 64);
  const std::int64_t L = arg_int(argc, argv, "--len", 32);
  const std::int64_t steps = arg_int(argc, argv, "--steps", 10);
  const std::int64_t warmup = arg_int(argc, argv, "--warmup", 2);
  Batch batch;
  if (vit) {
    c.activation = "gelu";
    c.image_size = 28;
    c.patch_size = arg_int(argc, argv, "--patch", 4);
    c.channels = 1;
    c.num_classes = 10;
    make_vit_batch(batch, c, B);
  } else {
    c.vocab_size = arg_int(argc, argv, "--vocab", 8000);
    c.max_len = L + 1;
    make_translation_batch(batch, c, B, L);
  }
  tr::validate_model_config(c);
  auto model = tr::make_model(c, DType::f32, 0.1, 1);
  tr::AdamW opt(model->parameters(), tr::AdamWConfig{0.9, 0.999, 1e-8, 0.05});
  tr_bench_timed_steps(model.get(), &opt, &batch, 0, warmup);
  const auto t0 = std::chrono::steady_clock::now();
  const double loss = tr_bench_timed_steps(model.get(), &opt, &batch, warmup, steps);
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
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  std::printf(
      "{\"model\": \"%s\", \"throughput\": %.3f, \"unit\": \"%s\", \"steps\": %lld, "
      "\"seconds\": %.4f, \"loss\": %.6f, \"tokens_per_step\": %lld, \"peak_rss_mb\": %.1f}\n",
      argv[1], static_cast<double>(targets) * steps / s, vit ? "images/s" : "target tokens/s",
      (long long)steps, s, loss, (long long)targets, usage.ru_maxrss / 1024.0);
  return 0;
}
