// Encoder and decoder layers, pre-LN or post-LN (DESIGN section 4).
//   pre:  x = x + drop(attn(norm1(x)));            x = x + drop(ffn(norm2(x)))
//   post: x = norm1(x + drop(attn(x)));            x = norm2(x + drop(ffn(x)))
// The decoder adds cross-attention (norm2) between them and its FFN uses norm3.
// Under tensor parallelism attention and FFN are split over the group (their own headers say
// how); the norms, residual stream and its dropout are replicated: every rank computes them on
// the same values, with the same dropout masks (keyed by global positions).
#pragma once

#include <string>

#include "layers/attention.h"
#include "layers/dropout.h"
#include "layers/feed_forward.h"
#include "layers/layer_norm.h"
#include "models/model_config.h"

namespace tr {

// Hands out dropout layer ids in construction order: deterministic for a given config.
struct DropoutIds {
  std::uint64_t next = 1;
  std::uint64_t take() { return next++; }
};

// A residual sub-block: the wrapped function f with its norm, dropout and skip connection.
// Keeps the pre/post-LN bookkeeping in one place for attention and FFN blocks alike.
class ResidualBlock {
 public:
  ResidualBlock(const std::string& norm_name, std::int64_t d, bool pre_norm, double dropout,
                DropoutIds& ids, DType dtype);
  void collect_parameters(ParameterList& out) { norm.collect_parameters(out); }
  // Returns the input of f (norm(x) for pre-LN, x for post-LN).
  Tensor begin(const Tensor& x);
  // As begin, for an f whose output covers only the first row of each sequence (x [B, T, d],
  // f_out [B, 1, d]): the skip connection carries x's first rows and the block's output is
  // [B, 1, d]; finish_backward then returns dx shaped like x.
  Tensor begin_first_rows(const Tensor& x);
  // Given f's output, finishes the block and returns its output.
  Tensor end(const Tensor& f_out, const ForwardContext& ctx);
  // Backward of the residual/norm part: returns d(f output); then call finish_backward with
  // d(f input) to obtain dx.
  Tensor begin_backward(const Tensor& dy);
  Tensor finish_backward(const Tensor& df_in);

  LayerNorm norm;
  bool pre_norm() const { return pre_; }
  // Drops the kept activations and gradient buffers (back to the pool).
  void release_activations();

 private:
  bool pre_;
  Dropout drop_;
  std::int64_t full_rows_ = 0;  // T of begin_first_rows' x; 0 after begin
  Tensor x_, x_first_, sum_, dsum_, dsum_full_, dx_;
};

class EncoderLayer {
 public:
  EncoderLayer(const std::string& name, const ModelConfig& c, DropoutIds& ids, DType dtype,
               TensorParallel* tp = nullptr);
  void collect_parameters(ParameterList& out);
  Tensor forward(const Tensor& x, const Tensor& src_len, const ForwardContext& ctx);
  Tensor backward(const Tensor& dy);
  // The layer's output for the first row of each sequence only, [B, 1, d] (the ViT's last
  // layer: only the CLS row reaches the head). Keys and values still span all rows; queries,
  // output projection, second block and FFN run on B rows instead of B x T. Same values as
  // forward's first rows up to summation order; dropout masks are drawn for the smaller
  // shapes. backward_first_rows takes dy [B, 1, d] and returns dx [B, T, d].
  Tensor forward_first_rows(const Tensor& x, const Tensor& src_len, const ForwardContext& ctx);
  Tensor backward_first_rows(const Tensor& dy);

 private:
  Tensor save_and_forward(const Tensor& x, const Tensor& src_len, const ForwardContext& ctx,
                          bool first_rows);
  Tensor run_forward(bool first_rows);  // on the saved inputs below
  Tensor run_backward(const Tensor& dy, bool first_rows);
  void release_activations();

  MultiHeadAttention self_attn_;
  FeedForward ffn_;
  ResidualBlock attn_block_, ffn_block_;
  Tensor h_first_;  // the attention block's f input, first rows (the queries)
  // The forward's inputs; Recompute::full keeps only these and reruns the forward in backward.
  Tensor x_, src_len_;
  ForwardContext ctx_;
  bool recompute_ = false;
};

class DecoderLayer {
 public:
  DecoderLayer(const std::string& name, const ModelConfig& c, DropoutIds& ids, DType dtype,
               TensorParallel* tp = nullptr);
  void collect_parameters(ParameterList& out);
  Tensor forward(const Tensor& x, const Tensor& tgt_len, const Tensor& memory,
                 const Tensor& src_len, const ForwardContext& ctx);
  // Adds the memory gradient into dmemory_sum (shaped like memory); under tensor parallelism
  // this rank's partial sum (MultiHeadAttention::backward_cross).
  Tensor backward(const Tensor& dy, Tensor& dmemory_sum);

  // Read-only views for incremental decoding (models/decoder_cache.h).
  const MultiHeadAttention& self_attn() const { return self_attn_; }
  const MultiHeadAttention& cross_attn() const { return cross_attn_; }
  const FeedForward& ffn() const { return ffn_; }
  const ResidualBlock& self_block() const { return self_block_; }
  const ResidualBlock& cross_block() const { return cross_block_; }
  const ResidualBlock& ffn_block() const { return ffn_block_; }

 private:
  Tensor run_forward();  // on the saved inputs below
  void release_activations();

  MultiHeadAttention self_attn_, cross_attn_;
  FeedForward ffn_;
  ResidualBlock self_block_, cross_block_, ffn_block_;
  // The forward's inputs; Recompute::full keeps only these and reruns the forward in backward.
  Tensor x_, tgt_len_, memory_, src_len_;
  ForwardContext ctx_;
  bool recompute_ = false;
};

}  // namespace tr
