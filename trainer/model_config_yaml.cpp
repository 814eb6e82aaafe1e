#include "trainer/model_config_yaml.h"

#include <functional>
#include <map>

#include "layers/error.h"

namespace tr {

namespace {

template <typename T>
T scalar_as(const YAML::Node& node, const std::string& key, const char* expected) {
  try {
    return node.as<T>();
  } catch (const YAML::Exception&) {
    throw UserError(key + ": expected " + expected + ", got '" +
                    (node.IsScalar() ? node.Scalar() : std::string("a non-scalar")) + "'");
  }
}

using Setter = std::function<void(ModelConfig&, const YAML::Node&, const std::string&)>;

const std::map<std::string, Setter>& setters() {
  static const std::map<std::string, Setter> table = {
      {"type", [](ModelConfig& c, const YAML::Node& n, const std::string& k) {
         c.type = scalar_as<std::string>(n, k, "a string");
       }},
      {"d_model", [](ModelConfig& c, const YAML::Node& n, const std::string& k) {
         c.d_model = scalar_as<std::int64_t>(n, k, "an integer");
       }},
      {"heads", [](ModelConfig& c, const YAML::Node& n, const std::string& k) {
         c.heads = scalar_as<std::int64_t>(n, k, "an integer");
       }},
      {"d_ff", [](ModelConfig& c, const YAML::Node& n, const std::string& k) {
         c.d_ff = scalar_as<std::int64_t>(n, k, "an integer");
       }},
      {"layers", [](ModelConfig& c, const YAML::Node& n, const std::string& k) {
         c.encoder_layers = c.decoder_layers = scalar_as<std::int64_t>(n, k, "an integer");
       }},
      {"encoder_layers", [](ModelConfig& c, const YAML::Node& n, const std::string& k) {
         c.encoder_layers = scalar_as<std::int64_t>(n, k, "an integer");
       }},
      {"decoder_layers", [](ModelConfig& c, const YAML::Node& n, const std::string& k) {
         c.decoder_layers = scalar_as<std::int64_t>(n, k, "an integer");
       }},
      {"dropout", [](ModelConfig& c, const YAML::Node& n, const std::string& k) {
         c.dropout = scalar_as<double>(n, k, "a number");
       }},
      {"norm", [](ModelConfig& c, const YAML::Node& n, const std::string& k) {
         c.norm = scalar_as<std::string>(n, k, "a string");
       }},
      {"activation", [](ModelConfig& c, const YAML::Node& n, const std::string& k) {
         c.activation = scalar_as<std::string>(n, k, "a string");
       }},
      {"share_embeddings", [](ModelConfig& c, const YAML::Node& n, const std::string& k) {
         c.share_embeddings = scalar_as<bool>(n, k, "true or false");
       }},
      {"positional", [](ModelConfig& c, const YAML::Node& n, const std::string& k) {
         c.positional = scalar_as<std::string>(n, k, "a string");
       }},
      {"max_len", [](ModelConfig& c, const YAML::Node& n, const std::string& k) {
         c.max_len = scalar_as<std::int64_t>(n, k, "an integer");
       }},
      {"vocab_size", [](ModelConfig& c, const YAML::Node& n, const std::string& k) {
         c.vocab_size = scalar_as<std::int64_t>(n, k, "an integer");
       }},
      {"pad_id", [](ModelConfig& c, const YAML::Node& n, const std::string& k) {
         c.pad_id = scalar_as<std::int32_t>(n, k, "an integer");
       }},
      {"bos_id", [](ModelConfig& c, const YAML::Node& n, const std::string& k) {
         c.bos_id = scalar_as<std::int32_t>(n, k, "an integer");
       }},
      {"eos_id", [](ModelConfig& c, const YAML::Node& n, const std::string& k) {
         c.eos_id = scalar_as<std::int32_t>(n, k, "an integer");
       }},
      {"image_size", [](ModelConfig& c, const YAML::Node& n, const std::string& k) {
         c.image_size = scalar_as<std::int64_t>(n, k, "an integer");
       }},
      {"patch_size", [](ModelConfig& c, const YAML::Node& n, const std::string& k) {
         c.patch_size = scalar_as<std::int64_t>(n, k, "an integer");
       }},
      {"channels", [](ModelConfig& c, const YAML::Node& n, const std::string& k) {
         c.channels = scalar_as<std::int64_t>(n, k, "an integer");
       }},
      {"num_classes", [](ModelConfig& c, const YAML::Node& n, const std::string& k) {
         c.num_classes = scalar_as<std::int64_t>(n, k, "an integer");
       }},
  };
  return table;
}

}  // namespace

ModelConfig model_config_from_yaml(const YAML::Node& node, const std::string& where,
                                   ModelConfig config) {
  if (!node.IsMap()) throw UserError(where + ": expected a mapping of model settings");
  // `type` first: the ViT's defaults differ (GELU) and later keys may override them.
  if (node["type"]) setters().at("type")(config, node["type"], where + ".type");
  if (config.type == "vit" && !node["activation"]) config.activation = "gelu";
  for (const auto& entry : node) {
    const std::string key = entry.first.as<std::string>();
    auto it = setters().find(key);
    if (it == setters().end()) throw UserError(where + "." + key + ": unknown key");
    it->second(config, entry.second, where + "." + key);
  }
  return config;
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

YAML::Node model_config_to_yaml(const ModelConfig& c) {
  YAML::Node n;
  n["type"] = c.type;
  n["d_model"] = c.d_model;
  n["heads"] = c.heads;
  n["d_ff"] = c.d_ff;
  n["encoder_layers"] = c.encoder_layers;
  if (c.type == "encoder_decoder") n["decoder_layers"] = c.decoder_layers;
  n["dropout"] = c.dropout;
  if (c.type == "encoder_decoder") {
    n["norm"] = c.norm;
    n["activation"] = c.activation;
    n["share_embeddings"] = c.share_embeddings;
    n["positional"] = c.positional;
    n["max_len"] = c.max_len;
    n["vocab_size"] = c.vocab_size;
    n["pad_id"] = c.pad_id;
    n["bos_id"] = c.bos_id;
    n["eos_id"] = c.eos_id;
  } else {
    n["image_size"] = c.image_size;
    n["patch_size"] = c.patch_size;
    n["channels"] = c.channels;
    n["num_classes"] = c.num_classes;
  }
  return n;
}

std::string model_config_to_yaml_text(const ModelConfig& config) {
  YAML::Emitter out;
  out << model_config_to_yaml(config);
  return std::string(out.c_str()) + "\n";
}

}  // namespace tr
