// Incremental (inference-only) decoding for an EncoderDecoder: one target position per step,
// with each decoder layer's self-attention keys/values of earlier positions kept in a cache
// and its cross-attention keys/values computed once from the encoder output.
//
// A step runs the same ops as EncoderDecoder::decode on one position, so its logits equal the
// full decode's at that position up to GEMM rounding (tests/models/test_decoder_cache.cpp).
// No dropout: decoding is inference. Rows are hypotheses; reorder() gathers them, which is
// how beam search follows its surviving beams and drops finished sentences.
//
// The self-attention cache grows by doubling up to `capacity` positions, so sentences that
// finish early never pay for the longest possible output. It runs on the device of the encoder
// output (the model's): the ops dispatch, and the cache's row writes and gathers are
// gather_rows (layers/device_ops.h: memcpy on the CPU, one kernel on CUDA).
//
// Under tensor parallelism every rank of the group steps the same hypotheses in lockstep: its
// caches hold its own heads, row-parallel layers sum over the group, and the logits are
// gathered over the whole vocabulary, so every rank takes the same decisions.
#pragma once

#include <cstdint>
#include <vector>

#include "models/encoder_decoder.h"

namespace tr {

class DecoderCache {
 public:
  // memory [B, S, d] (encoder output), src_len i32 [B] (either device). `capacity`: the most target
  // positions that will be stepped (at most the model's max_len). Row b starts as sentence b.
  DecoderCache(const EncoderDecoder& model, const Tensor& memory, const Tensor& src_len,
               std::int64_t capacity);

  std::int64_t rows() const { return rows_; }
  // Positions consumed so far; the next step feeds position length().
  std::int64_t length() const { return length_; }

  // New row r continues old row index[r]: rows may be repeated, dropped or permuted.
  void reorder(const std::vector<std::int64_t>& index);

  // Feeds tokens[r] (one per row) at position length() and returns the logits of the next
  // token, [rows, V], on the model's device. The tensor is overwritten by the next step.
  const Tensor& step(const std::vector<std::int32_t>& tokens);

 private:
  struct LayerCache {
    Tensor self_k, self_v;    // [rows, allocated, d]; positions < length() are valid
    Tensor cross_k, cross_v;  // [rows, S, d]
  };
  // One residual sub-block on x [rows, 1, d]: pre-LN x + f(norm(x)), post-LN norm(x + f(x)).
  template <typename F>
  void residual(Tensor& x, const ResidualBlock& block, F&& f);
  Tensor self_attention(const MultiHeadAttention& attn, LayerCache& cache, const Tensor& h);
  Tensor cross_attention(const MultiHeadAttention& attn, const LayerCache& cache, const Tensor& h);

  const EncoderDecoder& model_;
  void grow();  // doubles the allocated self-attention positions, at most to capacity

  Device device_;
  std::int64_t rows_, capacity_, allocated_, src_positions_, d_, kv_d_, length_ = 0;
  std::vector<LayerCache> layers_;
  Tensor src_len_;              // i32 [rows]
  Tensor self_len_;             // i32 [rows], all length() + 1 during a step
  Tensor host_ids_, host_len_;  // their host sides, uploaded each step
  // Step scratch, reused across steps.
  Tensor ids_, x_, h_, f_, sum_, q_, k_, v_, context_, probs_, mean_, rstd_, ffn_h_, ffn_a_,
      logits_;
};

}  // namespace tr
