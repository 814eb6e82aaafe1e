// Linear: y = x W^T + b, weight [out, in] (PyTorch layout), bias [out].
//
// Under tensor parallelism (layers/tensor_parallel.h) a Linear is split as in Megatron-LM:
//   column: the outputs are split: weight [out/tp, in], bias [out/tp]. The input is replicated,
//           so the input gradient returned by backward is this rank's partial sum; the caller
//           all-reduces it (the f operator), once for all projections of the same input.
//   row:    the inputs are split: weight [out, in/tp], bias [out] replicated. forward sums the
//           partial products over the group (the g operator) and then adds the bias, once.
//           backward needs no communication: dy is replicated, dx is this rank's slice.
// `in` and `out` are the full (canonical) sizes; parameters carry their shard (parameter.h).
#pragma once

#include <string>

#include "layers/parameter.h"
#include "layers/tensor_parallel.h"

namespace tr {

enum class TpSplit { none, column, row };

class Linear {
 public:
  Linear(const std::string& name, std::int64_t in, std::int64_t out, bool bias, DType dtype,
         TpSplit split = TpSplit::none, TensorParallel* tp = nullptr);
  void collect_parameters(ParameterList& out);
  // x [..., in] -> [..., out] (a new tensor each call); keeps a reference to x for backward.
  Tensor forward(const Tensor& x);
  // relu(forward(x)), the ReLU in the product's pass where the device can
  // (ops::linear_relu_forward). Not for a row-parallel layer: its output is whole only after the
  // group's sum and the bias.
  Tensor forward_relu(const Tensor& x);
  // gelu_tanh(forward(x)), with forward(x) itself stored in `pre` (for the backward of the layer
  // after: backward_through_gelu_tanh), in the product's pass where the device can
  // (ops::linear_gelu_tanh_forward). Not for a row-parallel layer, as forward_relu.
  Tensor forward_gelu_tanh(const Tensor& x, Tensor& pre);
  // Inference (no state kept): y = the forward of x, the row-parallel sum included; y is f32
  // for an f32 or bf16 x (decoding keeps fp32 activations).
  void apply(Tensor& y, const Tensor& x) const;
  // y = relu(apply(x)), fused as forward_relu (not for a row-parallel layer).
  void apply_relu(Tensor& y, const Tensor& x) const;
  // Marks the output as a block activation (layers/precision.h): forward then returns bf16
  // under bf16 activations, unless the layer is row-parallel.
  void set_block_activation_output(bool on) { block_activation_output_ = on; }
  // Accumulates dW, db; returns dx (overwritten each call).
  Tensor backward(const Tensor& dy);
  // As backward, for a layer whose input is gelu_tanh(gelu_input): returns the gradient of
  // gelu_input, dx * gelu_tanh'(gelu_input), carried through in the input gradient's product
  // where the device can (ops::linear_backward_through_gelu_tanh).
  Tensor backward_through_gelu_tanh(const Tensor& dy, const Tensor& gelu_input);
  // Drops the kept input and input-gradient buffers (back to the pool).
  void release_activations() { x_ = dx_ = Tensor(); }
  // Accumulates dW, db and adds dx into `dx_sum` (shaped like x), for inputs that
  // feed several projections.
  void backward_accumulate(Tensor& dx_sum, const Tensor& dy);

  Parameter weight, bias;
  // Local output width (out, or out / tp for a column-parallel layer).
  std::int64_t local_out() const { return weight.value.dim(0); }

 private:
  void apply_as(Tensor& y, const Tensor& x, DType y_dtype, bool relu = false) const;
  DType forward_dtype(const Tensor& x) const;

  bool has_bias_;
  bool block_activation_output_ = false;
  TensorParallel* row_tp_ = nullptr;  // set for a row-parallel layer over more than one rank
  Tensor x_, dx_;
};

}  // namespace tr
