// FeedForward: fc2(act(fc1(x))), fc1 d -> d_ff, fc2 d_ff -> d. Parameters {name}.fc1, {name}.fc2.
//
// Tensor-parallel (Megatron-LM): fc1 column-parallel, fc2 row-parallel, so each rank computes
// its d_ff / tp hidden units with no communication in between; the outputs are summed in fc2's
// forward and the input gradient in backward.
#pragma once

#include <string>

#include "layers/linear.h"
#include "layers/ops.h"

namespace tr {

ops::Activation parse_activation(const std::string& name);  // "relu" | "gelu" | "gelu_tanh"

class FeedForward {
 public:
  FeedForward(const std::string& name, std::int64_t d_model, std::int64_t d_ff, ops::Activation act,
              DType dtype, TensorParallel* tp = nullptr);
  void collect_parameters(ParameterList& out);
  Tensor forward(const Tensor& x);
  Tensor backward(const Tensor& dy);
  // Drops the kept activations and gradient buffers (back to the pool).
  void release_activations() {
    fc1.release_activations();
    fc2.release_activations();
    h_ = a_ = Tensor();
  }

  Linear fc1, fc2;
  ops::Activation activation() const { return act_; }

 private:
  ops::Activation act_;
  TensorParallel* tp_;  // null without tensor parallelism
  Tensor h_, a_;        // fc1's output (GELUs only: ReLU's backward reads a_) and act(h_)
};

}  // namespace tr
