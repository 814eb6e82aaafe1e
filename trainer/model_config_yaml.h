// The `model` section of a config in YAML <-> ModelConfig. Weights files store this text in
// their `config` attribute, so a file describes the model that reads it.
#pragma once

#include <string>

#include <yaml-cpp/yaml.h>

#include "models/model_config.h"

namespace tr {

// Reads a `model` mapping. Unknown keys and wrong types are UserErrors naming
// `<where>.<key>`; `layers` sets both encoder_layers and decoder_layers. Keys the node does not
// hold keep their values from `defaults`.
ModelConfig model_config_from_yaml(const YAML::Node& node, const std::string& where,
                                   ModelConfig defaults = {});
ModelConfig model_config_from_yaml_text(const std::string& text, const std::string& where);

// The keys that apply to config.type, in a stable order.
YAML::Node model_config_to_yaml(const ModelConfig& config);
std::string model_config_to_yaml_text(const ModelConfig& config);

}  // namespace tr
