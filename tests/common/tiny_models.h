// Tiny model configs shared by the model tests: small enough for finite differences in fp64,
// with every structural feature switched by argument.
#pragma once

#include <string>

#include "models/model_config.h"

namespace tr::testing {

inline ModelConfig tiny_translation(const std::string& norm, bool shared, const std::string& act,
                                    const std::string& positional, std::int64_t layers = 2) {
  ModelConfig c;
  c.type = "encoder_decoder";
  c.d_model = 8;
  c.heads = 2;
  c.d_ff = 12;
  c.encoder_layers = layers;
  c.decoder_layers = layers;
  c.norm = norm;
  c.share_embeddings = shared;
  c.activation = act;
  c.positional = positional;
  c.vocab_size = 13;
  c.max_len = 8;
  c.dropout = 0.2;
  return c;
}

inline ModelConfig tiny_vit(std::int64_t layers = 2, std::int64_t channels = 2) {
  ModelConfig c;
  c.type = "vit";
  c.d_model = 8;
  c.heads = 2;
  c.d_ff = 16;
  c.encoder_layers = layers;
  c.image_size = 6;
  c.patch_size = 3;
  c.channels = channels;
  c.num_classes = 3;
  c.dropout = 0.2;
  return c;
}

// A little larger (d 32, 4 heads, dropout 0.1): the device and precision comparisons, whose
// rounding differences a d 8 model would show in a handful of values only.
inline ModelConfig small_vit() {
  ModelConfig c = tiny_vit(2, 3);
  c.d_model = 32;
  c.heads = 4;
  c.d_ff = 64;
  c.image_size = 8;
  c.patch_size = 4;
  c.num_classes = 5;
  c.dropout = 0.1;
  return c;
}

// Pre-LN with ReLU, post-LN with GELU.
inline ModelConfig small_translation(const std::string& norm, bool shared,
                                     const std::string& positional) {
  ModelConfig c = tiny_translation(norm, shared, norm == "pre" ? "relu" : "gelu", positional);
  c.d_model = 32;
  c.heads = 4;
  c.d_ff = 64;
  c.vocab_size = 40;
  c.max_len = 16;
  c.dropout = 0.1;
  return c;
}

}  // namespace tr::testing
