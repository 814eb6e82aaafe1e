#include "layers/layer_norm.h"

#include "layers/ops.h"
#include "layers/precision.h"

namespace tr {

LayerNorm::LayerNorm(const std::string& name, std::int64_t d, DType dtype) {
  init_parameter(weight, name + ".weight", {d}, dtype, /*decay=*/false);
  weight.init = {InitRule::Kind::ones, 0};
  init_parameter(bias, name + ".bias", {d}, dtype, /*decay=*/false);
}

void LayerNorm::collect_parameters(ParameterList& out) {
  out.push_back(&weight);
  out.push_back(&bias);
}

Tensor LayerNorm::forward(const Tensor& x) {
  x_ = x;
  ops::layernorm_forward(y_, mean_, rstd_, x, weight.value, bias.value, kEps,
                         block_activation_output_ ? block_activation_dtype(x.dtype()) : x.dtype());
  return y_;
}

Tensor LayerNorm::backward(const Tensor& dy) {
  ops::layernorm_backward(dx_, weight.grad, bias.grad, dy, x_, weight.value, mean_, rstd_);
  return dx_;
}

Tensor LayerNorm::backward_add(const Tensor& dy, const Tensor& residual) {
  ops::layernorm_backward(dx_, weight.grad, bias.grad, dy, x_, weight.value, mean_, rstd_,
                          &residual);
  return dx_;
}

}  // namespace tr
