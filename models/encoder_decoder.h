// Encoder-decoder Transformer for translation (DESIGN section 4).
#pragma once

#include <memory>
#include <vector>

#include "layers/cross_entropy.h"
#include "layers/embedding.h"
#include "layers/positional_encoding.h"
#include "models/model.h"
#include "models/transformer_layers.h"

namespace tr {

class EncoderDecoder : public Model {
 public:
  EncoderDecoder(const ModelConfig& config, DType dtype, double label_smoothing);
  double forward(const Batch& batch, const ForwardContext& ctx) override;
  void backward(double scale) override;
  std::int64_t counted_targets() const override { return loss_.counted_rows(); }
  // After a training forward: only the counted (non-pad) target rows, [n, V], in row order.
  Tensor logits() const override { return logits_; }

  // Pieces used by decoding (trainer/): encoder output for a source batch, and decoder logits
  // for a target prefix against that memory.
  Tensor encode(const Tensor& src, const Tensor& src_len, const ForwardContext& ctx);
  Tensor decode(const Tensor& tgt_in, const Tensor& tgt_len, const Tensor& memory,
                const Tensor& src_len, const ForwardContext& ctx);

  // Read-only views of the decoder for incremental decoding (models/decoder_cache.h).
  bool pre_norm() const { return pre_; }
  const Embedding& target_embedding() const { return shared_ ? *src_embed_ : *tgt_embed_; }
  const PositionalEncoding& target_positions() const { return tgt_pos_; }
  const std::vector<std::unique_ptr<DecoderLayer>>& decoder_layers() const { return decoder_; }
  const LayerNorm* final_decoder_norm() const { return decoder_norm_.get(); }  // null: post-LN
  const Tensor& output_projection() const {
    return shared_ ? src_embed_->weight.value : output_.value;
  }

 private:
  // Decoder stack and final norm: dec_out_ [B, T, d].
  void decoder_states(const Tensor& tgt_in, const Tensor& tgt_len, const Tensor& memory,
                      const Tensor& src_len, const ForwardContext& ctx);
  Embedding& src_embedding() { return *src_embed_; }
  Embedding& tgt_embedding() { return shared_ ? *src_embed_ : *tgt_embed_; }
  Parameter& output_weight() { return shared_ ? src_embed_->weight : output_; }

  bool shared_, pre_;
  std::unique_ptr<Embedding> src_embed_, tgt_embed_;  // src_embed_ is `embed` when shared
  Parameter output_;                                  // `output.weight` when not shared
  PositionalEncoding src_pos_, tgt_pos_;
  DropoutIds dropout_ids_;
  Dropout src_drop_, tgt_drop_;
  std::vector<std::unique_ptr<EncoderLayer>> encoder_;
  std::vector<std::unique_ptr<DecoderLayer>> decoder_;
  std::unique_ptr<LayerNorm> encoder_norm_, decoder_norm_;  // pre-LN only
  CrossEntropy loss_;

  Tensor src_ids_, tgt_ids_, src_x_, tgt_x_, memory_, src_len_, dec_out_, logits_;
  Tensor dmemory_, ddec_, dtgt_;
  // Training forward: logits for counted target rows only (rows_: their flat indices).
  bool counted_rows_only_ = false;
  Tensor rows_, tgt_sel_, dec_sel_, dsel_;
};

}  // namespace tr
