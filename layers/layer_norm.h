// LayerNorm over the last axis, eps 1e-5, weight (ones) and bias (zeros) of size d.
#pragma once

#include <string>

#include "layers/parameter.h"

namespace tr {

class LayerNorm {
 public:
  LayerNorm(const std::string& name, std::int64_t d, DType dtype);
  void collect_parameters(ParameterList& out);
  Tensor forward(const Tensor& x);
  // Marks the output as a block activation (layers/precision.h): bf16 under bf16
  // activations (a pre-LN sublayer norm, whose output only feeds projections).
  void set_block_activation_output(bool on) { block_activation_output_ = on; }
  Tensor backward(const Tensor& dy);
  // backward(dy) + residual, in one pass (pre-LN blocks add the skip gradient).
  Tensor backward_add(const Tensor& dy, const Tensor& residual);
  // Drops the kept activations and gradient buffer (back to the pool).
  void release_activations() { x_ = y_ = mean_ = rstd_ = dx_ = Tensor(); }

  Parameter weight, bias;
  static constexpr double kEps = 1e-5;

 private:
  bool block_activation_output_ = false;
  Tensor x_, y_, mean_, rstd_, dx_;
};

}  // namespace tr
