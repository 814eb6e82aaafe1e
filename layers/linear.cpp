#include "layers/linear.h"

#include <cmath>

#include "layers/ops.h"

namespace tr {

Linear::Linear(const std::string& name, std::int64_t in, std::int64_t out, bool bias, DType dtype)
    : has_bias_(bias) {
  init_parameter(weight, name + ".weight", {out, in}, dtype, /*decay=*/true);
  // Xavier-uniform weights, zero biases: the usual Transformer initialisation.
  weight.init = {InitRule::Kind::uniform, std::sqrt(6.0 / static_cast<double>(in + out))};
  if (bias) init_parameter(this->bias, name + ".bias", {out}, dtype, /*decay=*/false);
}

void Linear::collect_parameters(ParameterList& out) {
  out.push_back(&weight);
  if (has_bias_) out.push_back(&bias);
}

Tensor Linear::forward(const Tensor& x) {
  x_ = x;
  ops::linear_forward(y_, x, weight.value, has_bias_ ? bias.value : Tensor());
  return y_;
}

Tensor Linear::backward(const Tensor& dy) {
  ops::linear_backward(&dx_, weight.grad, has_bias_ ? &bias.grad : nullptr, dy, x_, weight.value);
  return dx_;
}

void Linear::backward_accumulate(Tensor& dx_sum, const Tensor& dy) {
  ops::linear_backward_accumulate(dx_sum, weight.grad, has_bias_ ? &bias.grad : nullptr, dy, x_,
                                  weight.value);
}

}  // namespace tr
