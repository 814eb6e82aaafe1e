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

// Where a tensor-parallel rank's value lies in the canonical (full) tensor: along `axis`, local
// index i is full index offset + i for i < extent; local indices from extent on are padding (a
// vocabulary that TP does not divide), kept zero and never trained. axis -1: the value is the
// whole tensor, replicated on every TP rank.
struct TpShard {
  int axis = -1;
  Shape full_shape;  // the canonical shape; set for every parameter
  std::int64_t offset = 0, extent = 0;
};

struct Parameter {
  std::string name;  // canonical full name, e.g. "encoder.layers.0.self_attn.q_proj.weight"
  Tensor value;
  Tensor grad;        // same shape and dtype as value; accumulated by backward
  bool decay = true;  // AdamW weight decay applies (weights of Linear, Embedding, PatchEmbedding)
  InitRule init;
  TpShard shard;

  bool sharded() const { return shard.axis >= 0; }
  const Shape& full_shape() const { return shard.full_shape; }
};

// Parameters of a model in a fixed, canonical order. Non-owning: modules own the Parameter.
using ParameterList = std::vector<Parameter*>;

// Creates a parameter of the given shape with a zeroed gradient.
void init_parameter(Parameter& p, std::string name, const Shape& shape, DType dtype, bool decay);
// Creates this rank's shard of a parameter of canonical shape `full_shape`, split along `axis`:
// full_shape[axis] indices are split over `ranks` (layers/tensor_parallel.h: split_dim).
void init_sharded_parameter(Parameter& p, std::string name, const Shape& full_shape, int axis,
                            int rank, int ranks, DType dtype, bool decay);

// local = the shard's part of `full` (padding zeroed); both of one dtype, full of the shard's
// full shape, local of the local shape. An unsharded shard copies the whole tensor.
void copy_full_to_shard(Tensor& local, const Tensor& full, const TpShard& shard);
// The inverse: the shard's part of `full` = local (padding dropped); the rest of full untouched.
void copy_shard_to_full(Tensor& full, const Tensor& local, const TpShard& shard);

}  // namespace tr
