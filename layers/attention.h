// Multi-head attention: q/k/v projections, scaled dot-product attention with key padding and
// optional causal mask, dropout on the attention probabilities, output projection.
// Parameters: {name}.{q,k,v,o}_proj.{weight,bias}, each Linear d -> d.
#pragma once

#include <string>

#include "layers/dropout.h"
#include "layers/linear.h"

namespace tr {

class MultiHeadAttention {
 public:
  MultiHeadAttention(const std::string& name, std::int64_t d_model, std::int64_t heads, bool causal,
                     double dropout, std::uint64_t layer_id, DType dtype);
  void collect_parameters(ParameterList& out);

  // x_q [B, Tq, d]; x_kv [B, Tk, d] (the same tensor for self-attention); kv_len i32 [B] or
  // undefined. Returns [B, Tq, d].
  Tensor forward(const Tensor& x_q, const Tensor& x_kv, const Tensor& kv_len,
                 const ForwardContext& ctx);
  // Self-attention: returns dx (query and key/value paths summed).
  Tensor backward_self(const Tensor& dy);
  // Cross-attention: returns dx_q, and adds the key/value input gradient into dx_kv_sum
  // (shaped like x_kv; the caller zeroes it once per backward pass).
  Tensor backward_cross(const Tensor& dy, Tensor& dx_kv_sum);

  Linear q_proj, k_proj, v_proj, o_proj;
  std::int64_t heads() const { return heads_; }

 private:
  void backward_core(const Tensor& dy);
  std::int64_t heads_;
  bool causal_;
  double dropout_;
  std::uint64_t layer_id_;
  bool dropout_active_ = false;
  Tensor q_, k_, v_, kv_len_, probs_, keep_, context_;
  Tensor dcontext_, dq_, dk_, dv_, scratch_, dx_;
};

}  // namespace tr
