#include "layers/parameter.h"

namespace tr {

void init_parameter(Parameter& p, std::string name, const Shape& shape, DType dtype, bool decay) {
  p.name = std::move(name);
  p.value = Tensor::zeros(shape, dtype);
  p.grad = Tensor::zeros(shape, dtype);
  p.decay = decay;
}

}  // namespace tr
