// Multi-head attention: q/k/v projections, scaled dot-product attention with key padding and
// optional causal mask, dropout on the attention probabilities, output projection.
// Parameters: {name}.{q,k,v,o}_proj.{weight,bias}, each Linear d -> d.
//
// Tensor-parallel (Megatron-LM): the heads are split over the group. q/k/v are column-parallel
// (a rank projects to its heads only), o_proj is row-parallel (the partial outputs are summed,
// then its bias added once); the input gradients of q/k/v are summed over the group in
// backward. Attention-probability dropout uses, for each rank's heads, exactly the mask
// elements of those heads in the whole layer (layers/dropout.h: make_attention_dropout_mask).
#pragma once

#include <string>

#include "layers/dropout.h"
#include "layers/linear.h"

namespace tr {

class MultiHeadAttention {
 public:
  MultiHeadAttention(const std::string& name, std::int64_t d_model, std::int64_t heads, bool causal,
                     double dropout, std::uint64_t layer_id, DType dtype,
                     TensorParallel* tp = nullptr);
  void collect_parameters(ParameterList& out);

  // x_q [B, Tq, d]; x_kv [B, Tk, d] (the same tensor for self-attention); kv_len i32 [B] or
  // undefined. Returns [B, Tq, d].
  Tensor forward(const Tensor& x_q, const Tensor& x_kv, const Tensor& kv_len,
                 const ForwardContext& ctx);
  // Self-attention: returns dx (query and key/value paths summed).
  Tensor backward_self(const Tensor& dy);
  // Cross-attention: returns dx_q, and adds the key/value input gradient into dx_kv_sum
  // (shaped like x_kv; the caller zeroes it once per backward pass). Under tensor parallelism
  // dx_kv_sum receives this rank's partial sum: the caller all-reduces it once after every
  // layer has added to it (one collective for the whole decoder instead of one per layer).
  Tensor backward_cross(const Tensor& dy, Tensor& dx_kv_sum);
  // Self-attention whose queries were the first row of each sequence only (forward with
  // x_q = x[:, 0:1] and x_kv = x, see EncoderLayer::forward_first_rows): returns dx shaped like
  // x, the query path's gradient in the first rows, all-reduced under tensor parallelism.
  Tensor backward_self_first_rows(const Tensor& dy);
  // Drops the kept activations and gradient buffers (back to the pool).
  void release_activations();

  Linear q_proj, k_proj, v_proj, o_proj;
  // The heads this rank computes (all of them without tensor parallelism).
  std::int64_t heads() const { return heads_; }
  TensorParallel* tensor_parallel() const { return tp_; }

 private:
  // keep_ and context_ from q_, k_, v_ and kv_len_, and probs_ (or lse_ on the flash path).
  void attend(const ForwardContext& ctx);
  void backward_core(const Tensor& dy);
  // The keep mask the forward drew (undefined without dropout) and the scale of kept values.
  const Tensor& dropout_mask() const;
  double keep_scale() const { return dropout_active_ ? 1.0 / (1.0 - dropout_) : 1.0; }
  std::int64_t heads_, head_offset_;
  bool causal_;
  double dropout_;
  std::uint64_t layer_id_;
  TensorParallel* tp_;  // null without tensor parallelism
  bool dropout_active_ = false;
  // train.attention_dropout: fused, and cuDNN took the forward: its kernels drew the mask from
  // drawn_seed_ (keep_ stays undefined) and the backward draws it again.
  bool drawn_dropout_ = false;
  std::uint64_t drawn_seed_ = 0;
  // Recompute::selective: the probabilities and mask are given back after the forward and
  // recomputed by the backward, under the forward's context.
  bool recompute_probs_ = false;
  // Flash path (ops::use_flash_attention: CUDA, fp32 or bf16): the forward keeps each score row's
  // log-sum-exp (lse_) instead of the probabilities, and the backward recomputes them.
  bool flash_ = false;
  ForwardContext ctx_;
  Tensor q_, k_, v_, kv_len_, probs_, lse_, keep_, context_;
  Tensor dcontext_, dq_, dk_, dv_, scratch_, dx_, dx_first_rows_;
};

}  // namespace tr
