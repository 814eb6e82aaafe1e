// Shared by the bench programs: command-line lookups, the model shapes they build and the
// synthetic batches they train on (deterministic, no dataset needed).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "models/model.h"

namespace tr::bench {

inline std::int64_t arg_int(int argc, char** argv, const char* name, std::int64_t fallback) {
  for (int i = 2; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return std::atoll(argv[i + 1]);
  return fallback;
}
inline double arg_double(int argc, char** argv, const char* name, double fallback) {
  for (int i = 2; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return std::atof(argv[i + 1]);
  return fallback;
}
inline const char* arg_string(int argc, char** argv, const char* name, const char* fallback) {
  for (int i = 2; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
  return fallback;
}
inline bool has_flag(int argc, char** argv, const char* name) {
  for (int i = 2; i < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return true;
  return false;
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

inline void make_vit_batch(Batch& b, const tr::ModelConfig& c, std::int64_t B) {
  Lcg rng{42};
  b.images = Tensor::empty({B, c.channels, c.image_size, c.image_size}, DType::f32);
  float* px = b.images.data<float>();
  for (std::int64_t i = 0; i < b.images.numel(); ++i) px[i] = rng.uniform();
  b.labels = Tensor::empty({B}, DType::i32);
  for (std::int64_t i = 0; i < B; ++i)
    b.labels.data<std::int32_t>()[i] = static_cast<std::int32_t>(rng.next() % c.num_classes);
}

inline void make_translation_batch(Batch& b, const tr::ModelConfig& c, std::int64_t B,
                                   std::int64_t L) {
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

// The model of argv[1] ("vit" or "encdec") with the shape options below, defaulting to the
// reference shapes of the CPU-speed benchmark (docs/PERFORMANCE.md), and a synthetic batch of
// --batch / `batch_divisor` samples (a data-parallel rank's share).
//   vit:    --d 192 --layers 6 --heads 3 --ff 768 --patch 4 --batch 128 --dropout 0
//           --image 28 --channels 1 --classes 10 --activation gelu
//   encdec: --d 256 --layers 3 --heads 4 --ff 1024 --batch 64 --len 32 --vocab 8000
//           --dropout 0.1 --activation relu   (pre-LN, shared embeddings, sinusoidal positions)
//   (--activation: relu, gelu or gelu_tanh, model.activation's values)
inline tr::ModelConfig reference_model(int argc, char** argv, std::int64_t batch_divisor,
                                       Batch& batch) {
  const bool vit = std::strcmp(argv[1], "vit") == 0;
  tr::ModelConfig c;
  c.type = vit ? "vit" : "encoder_decoder";
  c.d_model = arg_int(argc, argv, "--d", vit ? 192 : 256);
  c.heads = arg_int(argc, argv, "--heads", vit ? 3 : 4);
  c.d_ff = arg_int(argc, argv, "--ff", vit ? 4 * c.d_model : 1024);
  c.encoder_layers = c.decoder_layers = arg_int(argc, argv, "--layers", vit ? 6 : 3);
  c.dropout = arg_double(argc, argv, "--dropout", vit ? 0.0 : 0.1);
  const std::int64_t B = arg_int(argc, argv, "--batch", vit ? 128 : 64) / batch_divisor;
  const std::int64_t L = arg_int(argc, argv, "--len", 32);
  c.activation = arg_string(argc, argv, "--activation", vit ? "gelu" : "relu");
  if (vit) {
    c.image_size = arg_int(argc, argv, "--image", 28);
    c.patch_size = arg_int(argc, argv, "--patch", 4);
    c.channels = arg_int(argc, argv, "--channels", 1);
    c.num_classes = arg_int(argc, argv, "--classes", 10);
    make_vit_batch(batch, c, B);
  } else {
    c.vocab_size = arg_int(argc, argv, "--vocab", 8000);
    c.max_len = L + 1;
    make_translation_batch(batch, c, B, L);
  }
  return c;
}

}  // namespace tr::bench
