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

}  // namespace tr::testing
