#include "layers/linear.h"

#include <cmath>

#include "layers/ops.h"
#include "layers/precision.h"

namespace tr {

Linear::Linear(const std::string& name, std::int64_t in, std::int64_t out, bool bias, DType dtype,
               TpSplit split, TensorParallel* tp)
    : has_bias_(bias) {
  tp = active_tp(tp);
  if (!tp) split = TpSplit::none;
  const int rank = tp_rank(tp), ranks = tp_size(tp);
  if (split == TpSplit::none)
    init_parameter(weight, name + ".weight", {out, in}, dtype, /*decay=*/true);
  else
    init_sharded_parameter(weight, name + ".weight", {out, in}, split == TpSplit::column ? 0 : 1,
                           rank, ranks, dtype, /*decay=*/true);
  // Xavier-uniform weights (of the full layer), zero biases: the usual Transformer
  // initialisation.
  weight.init = {InitRule::Kind::uniform, std::sqrt(6.0 / static_cast<double>(in + out))};
  if (bias) {
    if (split == TpSplit::column)
      init_sharded_parameter(this->bias, name + ".bias", {out}, 0, rank, ranks, dtype,
                             /*decay=*/false);
    else
      init_parameter(this->bias, name + ".bias", {out}, dtype, /*decay=*/false);
  }
  if (split == TpSplit::row) row_tp_ = tp;
}

void Linear::collect_parameters(ParameterList& out) {
  out.push_back(&weight);
  if (has_bias_) out.push_back(&bias);
}

void Linear::apply(Tensor& y, const Tensor& x) const {
  apply_as(y, x, wide_dtype(x.dtype()));
}

void Linear::apply_relu(Tensor& y, const Tensor& x) const {
  apply_as(y, x, wide_dtype(x.dtype()), /*relu=*/true);
}

void Linear::apply_as(Tensor& y, const Tensor& x, DType y_dtype, bool relu) const {
  if (!row_tp_) {
    const Tensor& b = has_bias_ ? bias.value : Tensor();
    if (relu)
      ops::linear_relu_forward(y, x, weight.value, b, y_dtype);
    else
      ops::linear_forward(y, x, weight.value, b, y_dtype);
    return;
  }
  TR_CHECK(!relu, "Linear: ReLU fused into a row-parallel layer");
  // Row-parallel: the partial products are summed over the group before the bias is added,
  // so the (replicated) bias counts once.
  ops::linear_forward(y, x, weight.value, Tensor(), y_dtype);
  row_tp_->all_reduce_sum(y);
  if (has_bias_) ops::bias_add_inplace(y, bias.value);
}

Tensor Linear::forward(const Tensor& x) {
  x_ = x;
  // The output is not kept: backward does not read it, and callers that need it keep it (q, k,
  // v, the FFN's hidden layer). An output consumed at once (the attention's and the FFN's
  // output projections, added into the residual stream) returns to the pool there, instead of
  // staying allocated to the end of the step (2 [N, d] per layer: 0.93 GB of ViT-B/16's bf16
  // step at batch 128).
  Tensor y;
  apply_as(y, x, forward_dtype(x));
  return y;
}

Tensor Linear::forward_relu(const Tensor& x) {
  x_ = x;
  Tensor y;
  apply_as(y, x, forward_dtype(x), /*relu=*/true);
  return y;
}

Tensor Linear::forward_gelu_tanh(const Tensor& x, Tensor& pre) {
  TR_CHECK(!row_tp_, "Linear: GELU fused into a row-parallel layer");
  x_ = x;
  Tensor y;
  ops::linear_gelu_tanh_forward(y, pre, x, weight.value, has_bias_ ? bias.value : Tensor(),
                                forward_dtype(x));
  return y;
}

DType Linear::forward_dtype(const Tensor& x) const {
  return block_activation_output_ && !row_tp_ ? block_activation_dtype(x.dtype())
                                              : wide_dtype(x.dtype());
}

Tensor Linear::backward(const Tensor& dy) {
  ops::linear_backward(&dx_, weight.grad, has_bias_ ? &bias.grad : nullptr, dy, x_, weight.value);
  return dx_;
}

Tensor Linear::backward_through_gelu_tanh(const Tensor& dy, const Tensor& gelu_input) {
  ops::linear_backward_through_gelu_tanh(dx_, weight.grad, has_bias_ ? &bias.grad : nullptr, dy, x_,
                                         weight.value, gelu_input);
  return dx_;
}

void Linear::backward_accumulate(Tensor& dx_sum, const Tensor& dy) {
  ops::linear_backward_accumulate(dx_sum, weight.grad, has_bias_ ? &bias.grad : nullptr, dy, x_,
                                  weight.value);
}

}  // namespace tr
