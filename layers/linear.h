// Linear: y = x W^T + b, weight [out, in] (PyTorch layout), bias [out].
#pragma once

#include <string>

#include "layers/parameter.h"

namespace tr {

class Linear {
 public:
  Linear(const std::string& name, std::int64_t in, std::int64_t out, bool bias, DType dtype);
  void collect_parameters(ParameterList& out);
  // x [..., in] -> [..., out]; keeps a reference to x for backward.
  Tensor forward(const Tensor& x);
  // Accumulates dW, db; returns dx (overwritten each call).
  Tensor backward(const Tensor& dy);
  // Accumulates dW, db and adds dx into `dx_sum` (shaped like x), for inputs that
  // feed several projections.
  void backward_accumulate(Tensor& dx_sum, const Tensor& dy);

  Parameter weight, bias;

 private:
  bool has_bias_;
  Tensor x_, y_, dx_;
};

}  // namespace tr
