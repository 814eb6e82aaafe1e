#include "layers/feed_forward.h"

namespace tr {

ops::Activation parse_activation(const std::string& name) {
  if (name == "relu") return ops::Activation::relu;
  if (name == "gelu") return ops::Activation::gelu;
  if (name == "gelu_tanh") return ops::Activation::gelu_tanh;
  throw UserError("model.activation: expected relu, gelu or gelu_tanh, got '" + name + "'");
}

FeedForward::FeedForward(const std::string& name, std::int64_t d_model, std::int64_t d_ff,
                         ops::Activation act, DType dtype, TensorParallel* tp)
    : fc1(name + ".fc1", d_model, d_ff, true, dtype, TpSplit::column, tp),
      fc2(name + ".fc2", d_ff, d_model, true, dtype, TpSplit::row, tp),
      act_(act),
      tp_(active_tp(tp)) {
  TR_CHECK(d_ff % tp_size(tp_) == 0, "parallel.tensor must divide d_ff");
  fc1.set_block_activation_output(true);
  fc2.set_block_activation_output(true);
}

void FeedForward::collect_parameters(ParameterList& out) {
  fc1.collect_parameters(out);
  fc2.collect_parameters(out);
}

Tensor FeedForward::forward(const Tensor& x) {
  if (act_ == ops::Activation::relu) {
    // fc1's product and the ReLU in one pass, and no pre-activation kept: backward's mask
    // [h > 0] is [relu(h) > 0].
    a_ = fc1.forward_relu(x);
  } else if (act_ == ops::Activation::gelu_tanh) {
    // fc1's product and the tanh GELU in one pass (cuBLASLt's GELU epilogue computes this
    // approximation), h_ written beside a_ for the backward.
    a_ = fc1.forward_gelu_tanh(x, h_);
  } else {
    h_ = fc1.forward(x);
    ops::activation_forward(a_, h_, act_);
  }
  return fc2.forward(a_);
}

Tensor FeedForward::backward(const Tensor& dy) {
  if (act_ == ops::Activation::gelu_tanh) {
    // The GELU's gradient in fc2's input-gradient product (cuBLASLt's DGELU epilogue).
    Tensor dx = fc1.backward(fc2.backward_through_gelu_tanh(dy, h_));
    tp_all_reduce(tp_, dx);
    return dx;
  }
  // The activation's gradient overwrites fc2's input gradient (elementwise, each element read
  // before it is written): no third [tokens, d_ff] buffer.
  Tensor dh = fc2.backward(dy);
  if (act_ == ops::Activation::relu)
    ops::activation_backward(dh, dh, a_, act_);
  else
    ops::activation_backward(dh, dh, h_, act_, a_);
  Tensor dx = fc1.backward(dh);
  tp_all_reduce(tp_, dx);  // f: each rank's hidden units give a part of the input gradient
  return dx;
}

}  // namespace tr
