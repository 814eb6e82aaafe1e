#include "layers/embedding.h"

#include <cmath>

#include "layers/ops.h"

namespace tr {

Embedding::Embedding(const std::string& name, std::int64_t vocab, std::int64_t d, DType dtype)
    : scale_(std::sqrt(static_cast<double>(d))) {
  init_parameter(weight, name + ".weight", {vocab, d}, dtype, /*decay=*/true);
  // N(0, 1/d): after the sqrt(d) scaling, embeddings enter the model with unit variance.
  weight.init = {InitRule::Kind::normal, 1.0 / scale_};
}

void Embedding::collect_parameters(ParameterList& out) {
  out.push_back(&weight);
}

void Embedding::forward(Tensor& out, const Tensor& ids) const {
  ops::embedding_forward(out, ids, weight.value, scale_);
}

void Embedding::backward_accumulate(const Tensor& ids, const Tensor& dout) {
  ops::embedding_backward_accumulate(weight.grad, ids, dout, scale_);
}

}  // namespace tr
