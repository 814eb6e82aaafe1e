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
  layer_config.activation = "gelu";  // DESIGN section 4: the ViT's MLP is always GELU
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

// out[b] = x[b, 0]  (the CLS row), and its backward into a zeroed [B, N+1, d] gradient.
template <typename T>
void take_cls(T* out, const T* x, std::int64_t B, std::int64_t rows, std::int64_t d) {
  for (std::int64_t b = 0; b < B; ++b) std::memcpy(out + b * d, x + b * rows * d, sizeof(T) * d);
}

template <typename T>
void put_cls(T* dx, const T* dcls, std::int64_t B, std::int64_t rows, std::int64_t d) {
  std::memset(dx, 0, sizeof(T) * B * rows * d);
  for (std::int64_t b = 0; b < B; ++b) std::memcpy(dx + b * rows * d, dcls + b * d, sizeof(T) * d);
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
  ensure_shape(cls_out_, {B, d}, patches.dtype(), patches.device());
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
  for (auto& layer : layers_) x = layer->forward(x, Tensor(), ctx);
  final_ = norm_.forward(x);
  if (on_cuda)
    cuda_moves::take_first_rows(cls_out_, final_);
  else
    with_float_type(final_.dtype(), [&](auto tag) {
      using T = decltype(tag);
      take_cls(cls_out_.data<T>(), final_.data<T>(), B, N + 1, d);
    });
  logits_ = head_.forward(cls_out_);
  return logits_;
}

double ViT::forward(const Batch& batch, const ForwardContext& ctx) {
  classify(batch.images, ctx);
  return loss_.forward(logits_, batch.labels);
}

void ViT::backward(double scale) {
  const std::int64_t B = logits_.dim(0), d = config_.d_model, N = num_patches_;
  Tensor dcls = head_.backward(loss_.backward(scale));
  report_ready(head_);
  ensure_shape(dtokens_, {B, N + 1, d}, dcls.dtype(), dcls.device());
  const bool on_cuda = dcls.device() == Device::cuda;
  if (on_cuda)
    cuda_moves::put_first_rows(dtokens_, dcls);
  else
    with_float_type(dcls.dtype(), [&](auto tag) {
      using T = decltype(tag);
      put_cls(dtokens_.data<T>(), dcls.data<T>(), B, N + 1, d);
    });
  Tensor dx = norm_.backward(dtokens_);
  report_ready(norm_);
  for (auto it = layers_.rbegin(); it != layers_.rend(); ++it) {
    dx = (*it)->backward(dx);
    report_ready(**it);
  }
  dx = embed_drop_.backward(dx);
  ensure_shape(dpatches_, {B, N, d}, dx.dtype(), dx.device());
  if (on_cuda)
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
