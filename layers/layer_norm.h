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
  Tensor backward(const Tensor& dy);
  // backward(dy) + residual, in one pass (pre-LN blocks add the skip gradient).
  Tensor backward_add(const Tensor& dy, const Tensor& residual);
  // Drops the kept activations and gradient buffer (back to the pool).
  void release_activations() { x_ = y_ = mean_ = rstd_ = dx_ = Tensor(); }

  Parameter weight, bias;
  static constexpr double kEps = 1e-5;

 private:
  Tensor x_, y_, mean_, rstd_, dx_;
};

}  // namespace tr
