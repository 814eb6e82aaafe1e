#include "models/vit.h"

#include <cstring>

#include "layers/device_ops.h"
#include "layers/ops.h"

namespace tr {

ViT::ViT(const ModelConfig& c, DType dtype, double label_smoothing, TensorParallel* tp)
    : Model(c),
      num_patches_((c.image_size / c.patch_size) * (c.image_size / c.patch_size)),
      patch_embed_("patch_embed", c.channels, c.patch_size, c.d_model, dtype),
      embed_drop_(c.dropout, dropout_ids_.take()),
      norm_("norm", c.d_model, dtype),
      head_("head", c.d_model, c.num_classes, true, dtype),
      loss_(label_smoothing, /*ignore_index=*/-1) {
  init_parameter(cls_token_, "cls_token", {1, 1, c.d_model}, dtype, /*decay=*/false);
  cls_token_.init = {InitRule::Kind::normal, 0.02};
  init_parameter(pos_embed_, "pos_embed", {1, num_patches_ + 1, c.d_model}, dtype,
                 /*decay=*/false);
  pos_embed_.init = {InitRule::Kind::normal, 0.02};
  ModelConfig layer_config = c;
  // DESIGN section 4: the ViT's MLP is a GELU, the exact one unless gelu_tanh is asked for (a
  // config written in code keeps ModelConfig's relu default; the YAML one defaults to gelu).
  layer_config.activation = c.activation == "gelu_tanh" ? "gelu_tanh" : "gelu";
  layer_config.norm = "pre";
  for (std::int64_t i = 0; i < c.encoder_layers; ++i)
    layers_.push_back(std::make_unique<EncoderLayer>("encoder.layers." + std::to_string(i),
                                                     layer_config, dropout_ids_, dtype, tp));
  patch_embed_.collect_parameters(parameters_);
  parameters_.push_back(&cls_token_);
  parameters_.push_back(&pos_embed_);
  for (auto& layer : layers_) layer->collect_parameters(parameters_);
  norm_.collect_parameters(parameters_);
  head_.collect_parameters(parameters_);
}

namespace {

// tokens[b, 0] = cls + pos[0]; tokens[b, 1 + n] = patches[b, n] + pos[1 + n]
template <typename T>
void assemble_tokens(T* tokens, const T* patches, const T* cls, const T* pos, std::int64_t B,
                     std::int64_t N, std::int64_t d) {
#pragma omp parallel for schedule(static)
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t t = 0; t <= N; ++t) {
      const T* src = t == 0 ? cls : patches + (b * N + t - 1) * d;
      T* dst = tokens + (b * (N + 1) + t) * d;
      for (std::int64_t i = 0; i < d; ++i) dst[i] = src[i] + pos[t * d + i];
    }
}

// Gradients of assemble_tokens: dcls += sum_b dtok[b, 0]; dpos += sum_b dtok[b];
// dpatches[b, n] = dtok[b, 1 + n].
template <typename T>
void split_token_grads(T* dpatches, T* dcls, T* dpos, const T* dtokens, std::int64_t B,
                       std::int64_t N, std::int64_t d) {
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t t = 0; t <= N; ++t) {
      const T* g = dtokens + (b * (N + 1) + t) * d;
      for (std::int64_t i = 0; i < d; ++i) dpos[t * d + i] += g[i];
      if (t == 0)
        for (std::int64_t i = 0; i < d; ++i) dcls[i] += g[i];
      else
        std::memcpy(dpatches + (b * N + t - 1) * d, g, sizeof(T) * d);
    }
  }
}

template <typename Body>
void with_float_type(DType dtype, Body&& body) {
  if (dtype == DType::f64)
    body(double{});
  else
    body(float{});
}

}  // namespace

Tensor ViT::classify(const Tensor& images, const ForwardContext& ctx) {
  const std::int64_t B = images.dim(0), d = config_.d_model, N = num_patches_;
  Tensor patches = patch_embed_.forward(images);
  ensure_shape(tokens_, {B, N + 1, d}, patches.dtype(), patches.device());
  const bool on_cuda = patches.device() == Device::cuda;
  if (on_cuda)
    cuda_moves::vit_assemble_tokens(tokens_, patches, cls_token_.value, pos_embed_.value);
  else
    with_float_type(patches.dtype(), [&](auto tag) {
      using T = decltype(tag);
      assemble_tokens(tokens_.data<T>(), patches.data<T>(), cls_token_.value.data<T>(),
                      pos_embed_.value.data<T>(), B, N, d);
    });
  Tensor x = embed_drop_.forward(tokens_, ctx);
  // Only the CLS row reaches the head: the last layer computes its output for that row alone
  // (keys and values over all rows), which skips most of that layer's work.
  for (std::size_t i = 0; i + 1 < layers_.size(); ++i) x = layers_[i]->forward(x, Tensor(), ctx);
  x = layers_.back()->forward_first_rows(x, Tensor(), ctx);
  final_ = norm_.forward(x);  // [B, 1, d]
  logits_ = head_.forward(final_.view({B, d}));
  return logits_;
}

double ViT::train_flops(const Batch& batch) const {
  const double t = static_cast<double>(num_patches_ + 1), d = static_cast<double>(config_.d_model),
               ff = static_cast<double>(config_.d_ff), P = static_cast<double>(config_.patch_size);
  const double layer = 2 * t * (4 * d * d + 2 * d * ff) + 4 * t * t * d;
  // The last layer: keys and values over all rows, the rest for the CLS row (classify()).
  const double last = 2 * t * 2 * d * d + 2 * (2 * d * d + 2 * d * ff) + 4 * t * d;
  const double patch = 2 * static_cast<double>(num_patches_) * config_.channels * P * P * d;
  const double head = 2 * d * static_cast<double>(config_.num_classes);
  const double per_image =
      static_cast<double>(config_.encoder_layers - 1) * layer + last + patch + head;
  return 3 * per_image * static_cast<double>(batch.size());
}

double ViT::forward(const Batch& batch, const ForwardContext& ctx) {
  classify(batch.images, ctx);
  return loss_.forward(logits_, batch.labels, batch.labels_host);
}

void ViT::backward(double scale) {
  const std::int64_t B = logits_.dim(0), d = config_.d_model, N = num_patches_;
  Tensor dcls = head_.backward(loss_.backward(scale));
  report_ready(head_);
  Tensor dx = norm_.backward(dcls.view({B, 1, d}));
  report_ready(norm_);
  dx = layers_.back()->backward_first_rows(dx);
  report_ready(*layers_.back());
  for (auto it = layers_.rbegin() + 1; it != layers_.rend(); ++it) {
    dx = (*it)->backward(dx);
    report_ready(**it);
  }
  dx = embed_drop_.backward(dx);
  ensure_shape(dpatches_, {B, N, d}, dx.dtype(), dx.device());
  if (dx.device() == Device::cuda)
    cuda_moves::vit_split_token_grads(dpatches_, cls_token_.grad, pos_embed_.grad, dx);
  else
    with_float_type(dx.dtype(), [&](auto tag) {
      using T = decltype(tag);
      split_token_grads(dpatches_.data<T>(), cls_token_.grad.data<T>(), pos_embed_.grad.data<T>(),
                        dx.data<T>(), B, N, d);
    });
  patch_embed_.backward(dpatches_);
  report_remaining_ready();  // patch embedding, cls token, positions
}

}  // namespace tr
