#include "layers/attention.h"

#include "layers/device_ops.h"
#include "layers/ops.h"

namespace tr {

MultiHeadAttention::MultiHeadAttention(const std::string& name, std::int64_t d_model,
                                       std::int64_t heads, bool causal, double dropout,
                                       std::uint64_t layer_id, DType dtype, TensorParallel* tp)
    : q_proj(name + ".q_proj", d_model, d_model, true, dtype, TpSplit::column, tp),
      k_proj(name + ".k_proj", d_model, d_model, true, dtype, TpSplit::column, tp),
      v_proj(name + ".v_proj", d_model, d_model, true, dtype, TpSplit::column, tp),
      o_proj(name + ".o_proj", d_model, d_model, true, dtype, TpSplit::row, tp),
      heads_(heads / tp_size(active_tp(tp))),
      head_offset_(heads_ * tp_rank(active_tp(tp))),
      causal_(causal),
      dropout_(dropout),
      layer_id_(layer_id),
      tp_(active_tp(tp)) {
  TR_CHECK(d_model % heads == 0, "heads must divide d_model");
  for (Linear* proj : {&q_proj, &k_proj, &v_proj, &o_proj}) proj->set_block_activation_output(true);
  TR_CHECK(heads % tp_size(tp_) == 0, "parallel.tensor must divide the heads");
}

void MultiHeadAttention::collect_parameters(ParameterList& out) {
  q_proj.collect_parameters(out);
  k_proj.collect_parameters(out);
  v_proj.collect_parameters(out);
  o_proj.collect_parameters(out);
}

Tensor MultiHeadAttention::forward(const Tensor& x_q, const Tensor& x_kv, const Tensor& kv_len,
                                   const ForwardContext& ctx) {
  q_ = q_proj.forward(x_q);
  k_ = k_proj.forward(x_kv);
  v_ = v_proj.forward(x_kv);
  kv_len_ = kv_len;
  attend(ctx);
  Tensor out = o_proj.forward(context_);
  // Nothing to give back on the flash path: it keeps no probabilities.
  recompute_probs_ = ctx.training && ctx.recompute == Recompute::selective && !flash_;
  if (recompute_probs_) {
    ctx_ = ctx;
    probs_ = keep_ = Tensor();
  }
  return out;
}

void MultiHeadAttention::attend(const ForwardContext& ctx) {
  dropout_active_ = ctx.training && dropout_ > 0;
  flash_ = ops::use_flash_attention(q_, k_, heads_);
  const std::int64_t first_head = tp_ ? head_offset_ : 0;
  // train.attention_dropout: fused: cuDNN draws the mask inside its kernels where it takes the
  // call; elsewhere the keyed mask below, as exact. A replay draws only where the first forward
  // drew: a plan made since its call would otherwise draw a mask it did not use.
  const bool first_forward_drew = drawn_dropout_;
  drawn_dropout_ = false;
  if (dropout_active_ && flash_ && ops::fused_attention_dropout() &&
      (!ctx.replay || first_forward_drew)) {
    drawn_seed_ = attention_dropout_seed(ctx, layer_id_, first_head);
    drawn_dropout_ = ops::flash_attention_forward_drawn_dropout(
        context_, lse_, q_, k_, v_, kv_len_, 1.0 - dropout_, drawn_seed_, heads_, causal_);
    if (drawn_dropout_) {
      keep_ = Tensor();
      return;
    }
  }
  if (dropout_active_) {
    const Shape shape{q_.dim(0), heads_, q_.dim(1), k_.dim(1)};
    // A TP rank's heads draw their part of the whole layer's mask.
    make_attention_dropout_mask(keep_, shape, dropout_, ctx, layer_id_, first_head, q_.device());
  }
  if (flash_)
    ops::flash_attention_forward(context_, lse_, q_, k_, v_, kv_len_, dropout_mask(), keep_scale(),
                                 heads_, causal_, 0);
  else
    ops::attention_forward(context_, probs_, q_, k_, v_, kv_len_, dropout_mask(), keep_scale(),
                           heads_, causal_, 0);
}

const Tensor& MultiHeadAttention::dropout_mask() const {
  static const Tensor none;
  return dropout_active_ ? keep_ : none;
}

void MultiHeadAttention::backward_core(const Tensor& dy) {
  dcontext_ = o_proj.backward(dy);
  if (flash_ && drawn_dropout_) {
    ops::flash_attention_backward_drawn_dropout(dq_, dk_, dv_, dcontext_, context_, lse_, q_, k_,
                                                v_, kv_len_, 1.0 - dropout_, drawn_seed_, heads_,
                                                causal_);
    return;
  }
  if (flash_) {
    ops::flash_attention_backward(dq_, dk_, dv_, dcontext_, context_, lse_, q_, k_, v_, kv_len_,
                                  dropout_mask(), keep_scale(), heads_, causal_, 0);
    return;
  }
  // Selective recomputation: the same probabilities and mask again (the context it rewrites is
  // the same too, and o_proj is done with it).
  if (recompute_probs_) attend(ctx_);
  ops::attention_backward(dq_, dk_, dv_, scratch_, dcontext_, probs_, q_, k_, v_, dropout_mask(),
                          keep_scale(), heads_);
  if (recompute_probs_) probs_ = keep_ = scratch_ = Tensor();
}

void MultiHeadAttention::release_activations() {
  for (Linear* proj : {&q_proj, &k_proj, &v_proj, &o_proj}) proj->release_activations();
  q_ = k_ = v_ = kv_len_ = probs_ = lse_ = keep_ = context_ = Tensor();
  dcontext_ = dq_ = dk_ = dv_ = scratch_ = dx_ = dx_first_rows_ = Tensor();
}

Tensor MultiHeadAttention::backward_self(const Tensor& dy) {
  backward_core(dy);
  // The query projection's input gradient buffer collects the key and value paths too.
  dx_ = q_proj.backward(dq_);
  k_proj.backward_accumulate(dx_, dk_);
  v_proj.backward_accumulate(dx_, dv_);
  tp_all_reduce(tp_, dx_);  // f: each rank's heads contributed a part of the input gradient
  return dx_;
}

Tensor MultiHeadAttention::backward_self_first_rows(const Tensor& dy) {
  backward_core(dy);
  // Its own buffer: after backward_self, dx_ shares q_proj's input-gradient buffer.
  put_first_rows(dx_first_rows_, q_proj.backward(dq_), k_.dim(1));
  k_proj.backward_accumulate(dx_first_rows_, dk_);
  v_proj.backward_accumulate(dx_first_rows_, dv_);
  tp_all_reduce(tp_, dx_first_rows_);
  return dx_first_rows_;
}

Tensor MultiHeadAttention::backward_cross(const Tensor& dy, Tensor& dx_kv_sum) {
  backward_core(dy);
  k_proj.backward_accumulate(dx_kv_sum, dk_);
  v_proj.backward_accumulate(dx_kv_sum, dv_);
  dx_ = q_proj.backward(dq_);
  tp_all_reduce(tp_, dx_);
  return dx_;
}

}  // namespace tr
