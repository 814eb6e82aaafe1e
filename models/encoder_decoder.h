// Encoder-decoder Transformer for translation (DESIGN section 4).
//
// Tensor-parallel: encoder and decoder blocks split as Megatron-LM; the embeddings and the
// output projection are vocabulary-parallel (layers/embedding.h), the tied table included, and
// the loss is the vocabulary-parallel cross entropy, so full-vocabulary logits exist only for
// inference (evaluation's logits(), decode(), output_logits()).
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
  EncoderDecoder(const ModelConfig& config, DType dtype, double label_smoothing,
                 TensorParallel* tp = nullptr);
  double forward(const Batch& batch, const ForwardContext& ctx) override;
  void backward(double scale) override;
  std::int64_t counted_targets() const override { return loss_.counted_rows(); }
  double train_flops(const Batch& batch) const override;
  // After a training forward: only the counted (non-pad) target rows, [n, V], in row order
  // (under tensor parallelism this rank's vocabulary columns); otherwise [B, T, V].
  // Also the sinusoidal position tables, which are no parameters.
  void to_device(Device device) override;
  Tensor logits() const override { return gathered_ ? full_logits_ : logits_; }

  // Pieces used by decoding (trainer/): encoder output for a source batch, and decoder logits
  // for a target prefix against that memory.
  Tensor encode(const Tensor& src, const Tensor& src_len, const ForwardContext& ctx);
  // Returns logits over the whole vocabulary [B, T, V] (gathered under tensor parallelism).
  Tensor decode(const Tensor& tgt_in, const Tensor& tgt_len, const Tensor& memory,
                const Tensor& src_len, const ForwardContext& ctx);

  // Read-only views of the decoder for incremental decoding (models/decoder_cache.h).
  bool pre_norm() const { return pre_; }
  const Embedding& target_embedding() const { return shared_ ? *src_embed_ : *tgt_embed_; }
  const PositionalEncoding& target_positions() const { return tgt_pos_; }
  const std::vector<std::unique_ptr<DecoderLayer>>& decoder_layers() const { return decoder_; }
  const LayerNorm* final_decoder_norm() const { return decoder_norm_.get(); }  // null: post-LN
  // logits [..., V] = h [..., d] times the output projection (the whole vocabulary: gathered
  // over the group under tensor parallelism; every rank must call it).
  void output_logits(Tensor& logits, const Tensor& h) const;

 private:
  // Decoder stack and final norm: dec_out_ [B, T, d].
  void decoder_states(const Tensor& tgt_in, const Tensor& tgt_len, const Tensor& memory,
                      const Tensor& src_len, const ForwardContext& ctx);
  Embedding& src_embedding() { return *src_embed_; }
  Embedding& tgt_embedding() { return shared_ ? *src_embed_ : *tgt_embed_; }
  Parameter& output_weight() { return shared_ ? src_embed_->weight : output_; }

  // logits_ = this rank's logits of h (all of them without tensor parallelism); under tensor
  // parallelism also the whole-vocabulary full_logits_, gathered.
  void project_and_gather(const Tensor& h);

  bool shared_, pre_;
  TensorParallel* tp_;                                // null without tensor parallelism
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
  Tensor rows_device_, tgt_sel_device_;  // their copies when the model is on CUDA
  const Tensor& selected_rows() const {
    return dec_out_.device() == Device::cpu ? rows_ : rows_device_;
  }
  Tensor full_logits_;                            // inference under tensor parallelism
  bool gathered_ = false;                         // full_logits_ holds the last forward's logits
  mutable Tensor gather_scratch_, local_logits_;  // output_logits' buffers
};

}  // namespace tr
