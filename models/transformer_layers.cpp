#include "models/transformer_layers.h"

#include "layers/device_ops.h"
#include "layers/ops.h"

namespace tr {

ResidualBlock::ResidualBlock(const std::string& norm_name, std::int64_t d, bool pre_norm,
                             double dropout, DropoutIds& ids, DType dtype)
    : norm(norm_name, d, dtype), pre_(pre_norm), drop_(dropout, ids.take()) {
  // A pre-LN sublayer norm's output only feeds the sublayer's projections.
  norm.set_block_activation_output(pre_norm);
}

Tensor ResidualBlock::begin(const Tensor& x) {
  x_ = x;
  full_rows_ = 0;
  return pre_ ? norm.forward(x) : x;
}

Tensor ResidualBlock::begin_first_rows(const Tensor& x) {
  take_first_rows(x_first_, x);  // own buffer: x_ may share a caller's tensor after begin
  x_ = x_first_;
  full_rows_ = x.dim(1);
  return pre_ ? norm.forward(x) : x;
}

Tensor ResidualBlock::end(const Tensor& f_out, const ForwardContext& ctx) {
  drop_.forward_add(sum_, x_, f_out, ctx);
  return pre_ ? sum_ : norm.forward(sum_);
}

void ResidualBlock::release_activations() {
  norm.release_activations();
  drop_.release_activations();
  x_ = x_first_ = sum_ = dsum_ = dsum_full_ = dx_ = Tensor();
}

Tensor ResidualBlock::begin_backward(const Tensor& dy) {
  // d(sum) is dy (pre) or the norm's input gradient (post); it flows to x and through drop(f).
  dsum_ = pre_ ? dy : norm.backward(dy);
  return drop_.backward(dsum_);
}

Tensor ResidualBlock::finish_backward(const Tensor& df_in) {
  // dx = dsum + (pre ? norm.backward(df_in) : df_in); after begin_first_rows the skip
  // connection's gradient reaches the first rows only.
  const Tensor* dskip = &dsum_;
  if (full_rows_ > 0) {
    put_first_rows(dsum_full_, dsum_, full_rows_);
    dskip = &dsum_full_;
  }
  if (pre_) return norm.backward_add(df_in, *dskip);
  ops::add(dx_, *dskip, df_in);
  return dx_;
}

EncoderLayer::EncoderLayer(const std::string& name, const ModelConfig& c, DropoutIds& ids,
                           DType dtype, TensorParallel* tp)
    : self_attn_(name + ".self_attn", c.d_model, c.heads, /*causal=*/false, c.dropout, ids.take(),
                 dtype, tp),
      ffn_(name + ".ffn", c.d_model, c.d_ff, parse_activation(c.activation), dtype, tp),
      attn_block_(name + ".norm1", c.d_model, c.norm == "pre", c.dropout, ids, dtype),
      ffn_block_(name + ".norm2", c.d_model, c.norm == "pre", c.dropout, ids, dtype) {}

void EncoderLayer::collect_parameters(ParameterList& out) {
  self_attn_.collect_parameters(out);
  attn_block_.collect_parameters(out);
  ffn_.collect_parameters(out);
  ffn_block_.collect_parameters(out);
}

Tensor EncoderLayer::forward(const Tensor& x, const Tensor& src_len, const ForwardContext& ctx) {
  return save_and_forward(x, src_len, ctx, false);
}

Tensor EncoderLayer::forward_first_rows(const Tensor& x, const Tensor& src_len,
                                        const ForwardContext& ctx) {
  return save_and_forward(x, src_len, ctx, true);
}

Tensor EncoderLayer::save_and_forward(const Tensor& x, const Tensor& src_len,
                                      const ForwardContext& ctx, bool first_rows) {
  x_ = x;
  src_len_ = src_len;
  ctx_ = ctx;
  recompute_ = ctx.training && ctx.recompute == Recompute::full;
  Tensor y = run_forward(first_rows);
  if (recompute_) release_activations();  // y keeps its own buffer alive for the next layer
  return y;
}

Tensor EncoderLayer::backward(const Tensor& dy) {
  return run_backward(dy, false);
}

Tensor EncoderLayer::backward_first_rows(const Tensor& dy) {
  return run_backward(dy, true);
}

Tensor EncoderLayer::run_forward(bool first_rows) {
  if (!first_rows) {
    Tensor h = attn_block_.begin(x_);
    Tensor x1 = attn_block_.end(self_attn_.forward(h, h, src_len_, ctx_), ctx_);
    Tensor h2 = ffn_block_.begin(x1);
    return ffn_block_.end(ffn_.forward(h2), ctx_);
  }
  Tensor h = attn_block_.begin_first_rows(x_);
  take_first_rows(h_first_, h);
  Tensor x1 = attn_block_.end(self_attn_.forward(h_first_, h, src_len_, ctx_), ctx_);
  Tensor h2 = ffn_block_.begin(x1);
  return ffn_block_.end(ffn_.forward(h2), ctx_);
}

Tensor EncoderLayer::run_backward(const Tensor& dy, bool first_rows) {
  if (recompute_) {  // bitwise the forward's activations again
    ctx_.replay = true;
    run_forward(first_rows);
  }
  Tensor dx1 = ffn_block_.finish_backward(ffn_.backward(ffn_block_.begin_backward(dy)));
  Tensor df = attn_block_.begin_backward(dx1);
  Tensor dx = attn_block_.finish_backward(first_rows ? self_attn_.backward_self_first_rows(df)
                                                     : self_attn_.backward_self(df));
  // Done with this layer's activations and gradient buffers: back to the pool, where the
  // layers below take them for their gradients and the next forward for its activations
  // (dx keeps its own buffer alive). Kept, they would double the step's peak memory.
  release_activations();
  return dx;
}

void EncoderLayer::release_activations() {
  self_attn_.release_activations();
  ffn_.release_activations();
  attn_block_.release_activations();
  ffn_block_.release_activations();
  h_first_ = Tensor();
}

DecoderLayer::DecoderLayer(const std::string& name, const ModelConfig& c, DropoutIds& ids,
                           DType dtype, TensorParallel* tp)
    : self_attn_(name + ".self_attn", c.d_model, c.heads, /*causal=*/true, c.dropout, ids.take(),
                 dtype, tp),
      cross_attn_(name + ".cross_attn", c.d_model, c.heads, /*causal=*/false, c.dropout, ids.take(),
                  dtype, tp),
      ffn_(name + ".ffn", c.d_model, c.d_ff, parse_activation(c.activation), dtype, tp),
      self_block_(name + ".norm1", c.d_model, c.norm == "pre", c.dropout, ids, dtype),
      cross_block_(name + ".norm2", c.d_model, c.norm == "pre", c.dropout, ids, dtype),
      ffn_block_(name + ".norm3", c.d_model, c.norm == "pre", c.dropout, ids, dtype) {}

void DecoderLayer::collect_parameters(ParameterList& out) {
  self_attn_.collect_parameters(out);
  cross_attn_.collect_parameters(out);
  ffn_.collect_parameters(out);
  self_block_.collect_parameters(out);
  cross_block_.collect_parameters(out);
  ffn_block_.collect_parameters(out);
}

Tensor DecoderLayer::forward(const Tensor& x, const Tensor& tgt_len, const Tensor& memory,
                             const Tensor& src_len, const ForwardContext& ctx) {
  x_ = x;
  tgt_len_ = tgt_len;
  memory_ = memory;
  src_len_ = src_len;
  ctx_ = ctx;
  recompute_ = ctx.training && ctx.recompute == Recompute::full;
  Tensor y = run_forward();
  if (recompute_) release_activations();  // y keeps its own buffer alive for the next layer
  return y;
}

Tensor DecoderLayer::run_forward() {
  Tensor h1 = self_block_.begin(x_);
  Tensor x1 = self_block_.end(self_attn_.forward(h1, h1, tgt_len_, ctx_), ctx_);
  Tensor h2 = cross_block_.begin(x1);
  Tensor x2 = cross_block_.end(cross_attn_.forward(h2, memory_, src_len_, ctx_), ctx_);
  Tensor h3 = ffn_block_.begin(x2);
  return ffn_block_.end(ffn_.forward(h3), ctx_);
}

Tensor DecoderLayer::backward(const Tensor& dy, Tensor& dmemory_sum) {
  if (recompute_) {  // bitwise the forward's activations again
    ctx_.replay = true;
    run_forward();
  }
  Tensor dx2 = ffn_block_.finish_backward(ffn_.backward(ffn_block_.begin_backward(dy)));
  Tensor dx1 = cross_block_.finish_backward(
      cross_attn_.backward_cross(cross_block_.begin_backward(dx2), dmemory_sum));
  Tensor dx =
      self_block_.finish_backward(self_attn_.backward_self(self_block_.begin_backward(dx1)));
  release_activations();  // as EncoderLayer::run_backward
  return dx;
}

void DecoderLayer::release_activations() {
  self_attn_.release_activations();
  cross_attn_.release_activations();
  ffn_.release_activations();
  self_block_.release_activations();
  cross_block_.release_activations();
  ffn_block_.release_activations();
}

}  // namespace tr
