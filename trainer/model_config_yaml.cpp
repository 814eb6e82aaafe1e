// The model section through the option table of the run config (trainer/config_schema.cpp), so
// a weights file's `config` attribute and a config file's `model` section are read alike.
#include "trainer/model_config_yaml.h"

#include "layers/error.h"
#include "trainer/config_schema.h"

namespace tr {

ModelConfig model_config_from_yaml(const YAML::Node& node, const std::string& where,
                                   ModelConfig defaults) {
  const std::string origin = where + ": ";
  config_schema::GivenMap given;
  config_schema::flatten(node, "model", origin, given);
  RunConfig config;
  static_cast<ModelConfig&>(config.model) = defaults;
  config_schema::apply_given(given, config);
  config_schema::check_ranges(config, "model", [&origin](const std::string&) { return origin; });
  return config.model;
}

ModelConfig model_config_from_yaml_text(const std::string& text, const std::string& where) {
  YAML::Node node;
  try {
    node = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw UserError(where + ": invalid YAML (" + e.msg + ")");
  }
  return model_config_from_yaml(node, where);
}

YAML::Node model_config_to_yaml(const ModelConfig& model) {
  RunConfig config;
  static_cast<ModelConfig&>(config.model) = model;
  YAML::Node node = config_schema::to_yaml(config, "model")["model"];
  node.remove("init");  // where a run's weights came from is no part of the weights
  return node;
}

std::string model_config_to_yaml_text(const ModelConfig& config) {
  YAML::Emitter out;
  out << model_config_to_yaml(config);
  return std::string(out.c_str()) + "\n";
}

}  // namespace tr
