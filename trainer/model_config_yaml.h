// The `model` section of a config in YAML <-> ModelConfig. Weights files store this text in
// their `config` attribute, so a file describes the model that reads it.
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>

#include "models/model_config.h"

namespace tr {

// Reads a `model` mapping with the keys, types and ranges of the run config's `model` section
// (trainer/config.h). Unknown keys, wrong types and values out of range are UserErrors
// "<where>: model.<key>: ..."; `layers` sets both encoder_layers and decoder_layers. Keys the
// node does not hold keep their values from `defaults` (a ViT's activation defaults to gelu).
ModelConfig model_config_from_yaml(const YAML::Node& node, const std::string& where,
                                   ModelConfig defaults = {});
ModelConfig model_config_from_yaml_text(const std::string& text, const std::string& where);

// The keys that apply to config.type, in the table's order (no `init`).
YAML::Node model_config_to_yaml(const ModelConfig& config);
std::string model_config_to_yaml_text(const ModelConfig& config);

}  // namespace tr
