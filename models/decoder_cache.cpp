#include "models/decoder_cache.h"

#include <algorithm>
#include <cstring>

#include "layers/device_ops.h"
#include "layers/ops.h"

namespace tr {

namespace {

// Linear::apply: row-parallel layers sum over the tensor-parallel group inside.
void linear(Tensor& y, const Tensor& x, const Linear& layer) {
  layer.apply(y, x);
}

void layer_norm(Tensor& y, Tensor& mean, Tensor& rstd, const Tensor& x, const LayerNorm& norm) {
  ops::layernorm_forward(y, mean, rstd, x, norm.weight.value, norm.bias.value, LayerNorm::kEps);
}

// Returns dst [index.size(), L, ...] with dst[r][:count] = src[index[r]][:count], counting
// elements from the start of a row; L is src's second dimension unless `positions` is set.
Tensor gather_rows(const Tensor& src, const std::vector<std::int64_t>& index, std::int64_t count,
                   std::int64_t positions = -1) {
  Shape shape = src.shape();
  shape[0] = static_cast<std::int64_t>(index.size());
  if (positions >= 0) shape[1] = positions;
  Tensor dst = Tensor::empty(shape, src.dtype(), src.device());
  const std::size_t src_row =
      src.dim(0) == 0 ? 0 : src.bytes() / static_cast<std::size_t>(src.dim(0));
  const std::size_t dst_row = index.empty() ? 0 : dst.bytes() / index.size();
  const std::size_t copy_bytes = static_cast<std::size_t>(count) * dtype_size(src.dtype());
  tr::gather_rows(src.device(), dst.raw(), dst_row, src.raw(), src_row, index, copy_bytes);
  return dst;
}

std::vector<std::int64_t> iota(std::int64_t n) {
  std::vector<std::int64_t> v(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = i;
  return v;
}

}  // namespace

DecoderCache::DecoderCache(const EncoderDecoder& model, const Tensor& memory, const Tensor& src_len,
                           std::int64_t capacity)
    : model_(model),
      device_(memory.device()),
      rows_(memory.dim(0)),
      capacity_(capacity),
      allocated_(std::min<std::int64_t>(capacity, 16)),
      src_positions_(memory.dim(1)),
      d_(memory.dim(2)) {
  // Keys and values hold this rank's heads only under tensor parallelism.
  kv_d_ = model.decoder_layers().empty()
              ? d_
              : model.decoder_layers().front()->self_attn().k_proj.local_out();
  TR_CHECK(src_len.dtype() == DType::i32 && src_len.numel() == rows_, "DecoderCache: src_len");
  TR_CHECK(capacity > 0 && capacity <= model.target_positions().max_len(),
           "DecoderCache: capacity " + std::to_string(capacity) + " outside [1, max_len]");
  src_len_ = Tensor::empty(src_len.shape(), DType::i32, device_);
  src_len_.copy_from(src_len);
  for (const auto& layer : model.decoder_layers()) {
    LayerCache c;
    c.self_k = Tensor::empty({rows_, allocated_, kv_d_}, memory.dtype(), device_);
    c.self_v = Tensor::empty({rows_, allocated_, kv_d_}, memory.dtype(), device_);
    linear(c.cross_k, memory, layer->cross_attn().k_proj);
    linear(c.cross_v, memory, layer->cross_attn().v_proj);
    layers_.push_back(std::move(c));
  }
}

void DecoderCache::reorder(const std::vector<std::int64_t>& index) {
  bool identity = static_cast<std::int64_t>(index.size()) == rows_;
  for (std::size_t r = 0; r < index.size(); ++r) {
    TR_CHECK(index[r] >= 0 && index[r] < rows_, "DecoderCache::reorder: row out of range");
    identity = identity && index[r] == static_cast<std::int64_t>(r);
  }
  if (identity) return;
  // Only the valid prefix of the self-attention cache is copied.
  for (LayerCache& c : layers_) {
    c.self_k = gather_rows(c.self_k, index, length_ * kv_d_);
    c.self_v = gather_rows(c.self_v, index, length_ * kv_d_);
    c.cross_k = gather_rows(c.cross_k, index, src_positions_ * kv_d_);
    c.cross_v = gather_rows(c.cross_v, index, src_positions_ * kv_d_);
  }
  src_len_ = gather_rows(src_len_.view({rows_, 1}), index, 1)
                 .view({static_cast<std::int64_t>(index.size())});
  rows_ = static_cast<std::int64_t>(index.size());
}

void DecoderCache::grow() {
  allocated_ = std::min(capacity_, 2 * allocated_);
  const std::vector<std::int64_t> same = iota(rows_);
  for (LayerCache& c : layers_) {
    c.self_k = gather_rows(c.self_k, same, length_ * kv_d_, allocated_);
    c.self_v = gather_rows(c.self_v, same, length_ * kv_d_, allocated_);
  }
}

template <typename F>
void DecoderCache::residual(Tensor& x, const ResidualBlock& block, F&& f) {
  if (block.pre_norm()) {
    layer_norm(h_, mean_, rstd_, x, block.norm);
    ops::add(x, x, f(h_));
  } else {
    ops::add(sum_, x, f(x));
    layer_norm(x, mean_, rstd_, sum_, block.norm);
  }
}

Tensor DecoderCache::self_attention(const MultiHeadAttention& attn, LayerCache& c,
                                    const Tensor& h) {
  linear(q_, h, attn.q_proj);
  linear(k_, h, attn.k_proj);
  linear(v_, h, attn.v_proj);
  // Append this position's key and value to every row's cache.
  const std::size_t vec_bytes = static_cast<std::size_t>(kv_d_) * dtype_size(h.dtype());
  const std::size_t row_bytes = vec_bytes * static_cast<std::size_t>(allocated_);
  const std::size_t at = vec_bytes * static_cast<std::size_t>(length_);
  const std::vector<std::int64_t> same = iota(rows_);
  gather_rows(device_, static_cast<char*>(c.self_k.raw()) + at, row_bytes, k_.raw(), vec_bytes,
              same, vec_bytes);
  gather_rows(device_, static_cast<char*>(c.self_v.raw()) + at, row_bytes, v_.raw(), vec_bytes,
              same, vec_bytes);
  // The query sits at position length(): causal with that offset sees keys 0..length().
  ops::attention_forward(context_, probs_, q_, c.self_k, c.self_v, self_len_, Tensor(), 1.0,
                         attn.heads(), /*causal=*/true, length_);
  linear(f_, context_, attn.o_proj);
  return f_;
}

Tensor DecoderCache::cross_attention(const MultiHeadAttention& attn, const LayerCache& c,
                                     const Tensor& h) {
  linear(q_, h, attn.q_proj);
  ops::attention_forward(context_, probs_, q_, c.cross_k, c.cross_v, src_len_, Tensor(), 1.0,
                         attn.heads(), /*causal=*/false, 0);
  linear(f_, context_, attn.o_proj);
  return f_;
}

const Tensor& DecoderCache::step(const std::vector<std::int32_t>& tokens) {
  TR_CHECK(static_cast<std::int64_t>(tokens.size()) == rows_,
           "DecoderCache::step: one token per row");
  TR_CHECK(length_ < capacity_,
           "DecoderCache::step: capacity " + std::to_string(capacity_) + " exhausted");
  if (length_ == allocated_) grow();
  ensure_shape(host_ids_, {rows_, 1}, DType::i32);
  std::memcpy(host_ids_.raw(), tokens.data(), tokens.size() * sizeof(std::int32_t));
  ensure_shape(host_len_, {rows_}, DType::i32);
  for (std::int64_t r = 0; r < rows_; ++r)
    host_len_.data<std::int32_t>()[r] = static_cast<std::int32_t>(length_ + 1);
  ensure_shape(ids_, {rows_, 1}, DType::i32, device_);
  ensure_shape(self_len_, {rows_}, DType::i32, device_);
  ids_.copy_from(host_ids_);
  self_len_.copy_from(host_len_);

  model_.target_embedding().forward(x_, ids_);
  model_.target_positions().forward_inplace(x_, length_);
  for (std::size_t l = 0; l < layers_.size(); ++l) {
    const DecoderLayer& layer = *model_.decoder_layers()[l];
    LayerCache& c = layers_[l];
    residual(x_, layer.self_block(),
             [&](const Tensor& h) { return self_attention(layer.self_attn(), c, h); });
    residual(x_, layer.cross_block(),
             [&](const Tensor& h) { return cross_attention(layer.cross_attn(), c, h); });
    residual(x_, layer.ffn_block(), [&](const Tensor& h) {
      const FeedForward& ffn = layer.ffn();
      if (ffn.activation() == ops::Activation::relu) {
        ffn.fc1.apply_relu(ffn_a_, h);  // as FeedForward::forward: one pass
      } else {
        linear(ffn_h_, h, ffn.fc1);
        ops::activation_forward(ffn_a_, ffn_h_, ffn.activation());
      }
      linear(f_, ffn_a_, ffn.fc2);
      return f_;
    });
  }
  const LayerNorm* final_norm = model_.final_decoder_norm();
  if (final_norm != nullptr) layer_norm(h_, mean_, rstd_, x_, *final_norm);
  model_.output_logits(logits_, final_norm != nullptr ? h_ : x_);
  logits_ = logits_.view({rows_, logits_.dim(-1)});
  ++length_;
  return logits_;
}

}  // namespace tr
