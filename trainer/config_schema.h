// Internal to the config code (trainer/config*.cpp, trainer/model_config_yaml.cpp): the option
// table and the generic machinery that reads, checks and writes a RunConfig through it.
#pragma once

#include <yaml-cpp/yaml.h>

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "trainer/config.h"

namespace tr::config_schema {

// One option. `read` converts a YAML value into the field (false: wrong type, or a value the
// field cannot hold); `valid` checks the field's current value against the range or choices;
// `write` gives the value as YAML. All three are built from one field accessor.
struct Option {
  std::string key;       // dotted path, e.g. "train.optimizer.lr"
  std::string expected;  // "an integer >= 1", "one of adamw, sgd", ...
  std::string help;
  std::string model_type;             // "" = every model; otherwise the model.type it applies to
  std::vector<std::string> replaces;  // keys that an override of this one resets to default
  bool emitted = true;                // false for aliases (model.layers): written as targets
  bool architecture = false;          // must agree with the weights file of model.init
  bool quote = false;                 // messages quote the value (strings, choices)
  std::function<bool(RunConfig&, const YAML::Node&)> read;
  std::function<bool(const RunConfig&)> valid;
  std::function<YAML::Node(const RunConfig&)> write;

  Option& only_for(std::string type) {
    model_type = std::move(type);
    return *this;
  }
  Option& shapes() {
    architecture = true;
    return *this;
  }
  Option& clears(std::vector<std::string> keys) {
    replaces = std::move(keys);
    return *this;
  }
};

// In application order: model.type comes first (other model defaults depend on it) and the
// alias model.layers before the keys it sets, so `layers: 6, decoder_layers: 4` works.
const std::vector<Option>& options();
const Option* find_option(std::string_view key);
// Whether the option applies to the config's model type (others are ignored and not written).
bool applies(const Option& option, const RunConfig& config);

// Values given for leaf keys, and where each came from: the prefix of messages about it
// ("configs/x.yaml: " or "--set ").
struct Given {
  YAML::Node value;
  std::string origin;
};
using GivenMap = std::map<std::string, Given>;

// Adds the leaves of mapping `node` found under section `prefix` ("" = the whole config,
// "model" for a weights file's section). Unknown keys, duplicates and non-mappings where a
// section belongs are UserErrors prefixed with `origin`.
void flatten(const YAML::Node& node, const std::string& prefix, const std::string& origin,
             GivenMap& out);
// Merges one "key.path=value" (a leaf, or a section given a mapping) into `given`.
void merge_override(const std::string& assignment, GivenMap& given);
// Writes the given values into `config` in table order, then the defaults that depend on other
// keys (the ViT's gelu, run.dir from run.name). Type errors name the origin and the key.
void apply_given(const GivenMap& given, RunConfig& config);

// Per-key ranges and choices of the options under `prefix` ("" = all) that apply, in table
// order. `origin` gives the message prefix of a key.
void check_ranges(const RunConfig& config, std::string_view prefix,
                  const std::function<std::string(const std::string&)>& origin);

// validate_run_config with the message prefix of each key (trainer/config_checks.cpp);
// cross-key messages take the prefix of the key they name first.
void validate(const RunConfig& config,
              const std::function<std::string(const std::string&)>& origin);

// The options whose key starts with `prefix` and that apply, as nested YAML mappings.
YAML::Node to_yaml(const RunConfig& config, std::string_view prefix);
// Text of a YAML value for messages: scalars as written, [a, b] for lists.
std::string describe(const YAML::Node& node);

// Levenshtein distance, and the nearest of `candidates`: the shortest that starts with `word`,
// else the one at the least distance (the first on ties).
std::size_t edit_distance(std::string_view a, std::string_view b);
std::string nearest(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace tr::config_schema
