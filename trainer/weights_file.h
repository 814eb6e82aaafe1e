// Weights files (DESIGN section 5): one float32 dataset per parameter at the root, named by
// the parameter's canonical name (dots kept), full unsharded shape; root string attributes
// `model_type` and `config` (the model's YAML section). Written by `trainer export`, read by
// `model.init`, `trainer eval --weights` and the golden parity tests.
#pragma once

#include <string>

#include "layers/parameter.h"

namespace tr {

struct WeightsInfo {
  std::string model_type;  // "encoder_decoder" | "vit"
  std::string config;      // the model section as YAML text
};

// Writes every parameter (f64 values are rounded to f32) to `path`; whole tensors only (a
// tensor-parallel run's shards are assembled from its checkpoint: `trainer export`). The data goes
// to `path + ".tmp"` first and is renamed into place once complete and synced, so a crash never
// leaves a half-written file under the final name. Host parameters only.
void write_weights(const std::string& path, const std::string& model_type,
                   const std::string& config_yaml, const ParameterList& params);

// Loads every parameter from `path`, converting to each parameter's dtype. Throws UserError
// naming the file and the tensor when one is missing, has another shape, is not floating
// point, or when the file holds a root dataset that is not a parameter of the model (root
// groups are ignored: golden files keep their reference data there). All checks run before
// any value is read, so a file that does not fit leaves `params` unchanged. A tensor-parallel
// shard (Parameter::shard) is checked against its full shape and receives its slice.
WeightsInfo read_weights(const std::string& path, const ParameterList& params);

}  // namespace tr
