// A trainable tensor with its gradient and canonical name (DESIGN section 4).
#pragma once

#include <string>
#include <vector>

#include "layers/tensor.h"

namespace tr {

// How a parameter is initialised (models/init.cpp applies it, seeded and keyed by name).
struct InitRule {
  enum class Kind { zeros, ones, uniform, normal };
  Kind kind = Kind::zeros;
  double scale = 0;  // uniform: bound b of U(-b, b); normal: standard deviation
};

struct Parameter {
  std::string name;  // canonical full name, e.g. "encoder.layers.0.self_attn.q_proj.weight"
  Tensor value;
  Tensor grad;        // same shape and dtype as value; accumulated by backward
  bool decay = true;  // AdamW weight decay applies (weights of Linear, Embedding, PatchEmbedding)
  InitRule init;
};

// Parameters of a model in a fixed, canonical order. Non-owning: modules own the Parameter.
using ParameterList = std::vector<Parameter*>;

// Creates a parameter of the given shape with a zeroed gradient.
void init_parameter(Parameter& p, std::string name, const Shape& shape, DType dtype, bool decay);

}  // namespace tr
