// Vision Transformer (DESIGN section 4): patch embedding, CLS token, learned positions,
// pre-LN encoder with GELU, final norm, linear head on the CLS token. Under tensor parallelism
// only the encoder blocks are split; the patch embedding, CLS token, positions, final norm and
// head are replicated (small, and their inputs and gradients are replicated anyway).
#pragma once

#include <memory>
#include <vector>

#include "layers/cross_entropy.h"
#include "layers/linear.h"
#include "layers/patch_embedding.h"
#include "models/model.h"
#include "models/transformer_layers.h"

namespace tr {

class ViT : public Model {
 public:
  ViT(const ModelConfig& config, DType dtype, double label_smoothing, TensorParallel* tp = nullptr);
  double forward(const Batch& batch, const ForwardContext& ctx) override;
  void backward(double scale) override;
  std::int64_t counted_targets() const override { return loss_.counted_rows(); }
  double train_flops(const Batch& batch) const override;
  Tensor logits() const override { return logits_; }
  // Logits only (evaluation, prediction): images [B, C, H, W] -> [B, classes].
  Tensor classify(const Tensor& images, const ForwardContext& ctx);

 private:
  std::int64_t num_patches_;
  PatchEmbedding patch_embed_;
  Parameter cls_token_, pos_embed_;
  DropoutIds dropout_ids_;
  Dropout embed_drop_;
  std::vector<std::unique_ptr<EncoderLayer>> layers_;
  LayerNorm norm_;
  Linear head_;
  CrossEntropy loss_;

  Tensor tokens_, logits_, dpatches_;
  Tensor final_;
};

}  // namespace tr
