// The model section of a run's configuration, as plain data (no YAML here: trainer/ parses it).
#pragma once

#include <cstdint>
#include <string>

namespace tr {

struct ModelConfig {
  std::string type = "encoder_decoder";  // encoder_decoder | vit
  std::int64_t d_model = 256;
  std::int64_t heads = 4;
  std::int64_t d_ff = 1024;
  std::int64_t encoder_layers = 3;  // `layers: N` in YAML sets both
  std::int64_t decoder_layers = 3;  // unused by the ViT
  double dropout = 0.0;
  std::string norm = "pre";               // pre | post   (ViT: pre only)
  std::string activation = "relu";        // relu | gelu | gelu_tanh  (ViT: gelu or gelu_tanh)
  bool share_embeddings = true;           // encoder_decoder
  std::string positional = "sinusoidal";  // sinusoidal | learned (encoder_decoder)
  std::int64_t max_len = 256;             // longest sequence incl. BOS/EOS
  std::int64_t vocab_size = 0;            // encoder_decoder; 0 = take it from the data
  std::int32_t pad_id = 0, bos_id = 1, eos_id = 2;
  std::int64_t image_size = 28;  // vit
  std::int64_t patch_size = 4;
  std::int64_t channels = 1;
  std::int64_t num_classes = 10;
};

}  // namespace tr
