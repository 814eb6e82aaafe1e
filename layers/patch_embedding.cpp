#include "layers/patch_embedding.h"

#include "layers/device_ops.h"
#include "layers/ops.h"

namespace tr {

namespace {

template <typename T>
void images_to_patches(T* patches, const T* images, std::int64_t B, std::int64_t C, std::int64_t H,
                       std::int64_t W, std::int64_t P) {
  const std::int64_t gh = H / P, gw = W / P, patch_len = C * P * P;
#pragma omp parallel for collapse(2) schedule(static)
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t py = 0; py < gh; ++py)
      for (std::int64_t px = 0; px < gw; ++px) {
        T* out = patches + ((b * gh + py) * gw + px) * patch_len;
        for (std::int64_t c = 0; c < C; ++c)
          for (std::int64_t r = 0; r < P; ++r) {
            const T* src = images + ((b * C + c) * H + py * P + r) * W + px * P;
            for (std::int64_t col = 0; col < P; ++col) *out++ = src[col];
          }
      }
}

}  // namespace

PatchEmbedding::PatchEmbedding(const std::string& name, std::int64_t channels, std::int64_t patch,
                               std::int64_t d, DType dtype)
    : proj(name, channels * patch * patch, d, true, dtype), channels_(channels), patch_(patch) {}

void PatchEmbedding::collect_parameters(ParameterList& out) {
  proj.collect_parameters(out);
}

Tensor PatchEmbedding::forward(const Tensor& images) {
  const std::int64_t B = images.dim(0), C = images.dim(1), H = images.dim(2), W = images.dim(3);
  TR_CHECK(C == channels_ && H % patch_ == 0 && W % patch_ == 0,
           "patch embedding: image shape " + shape_string(images.shape()));
  const std::int64_t N = (H / patch_) * (W / patch_);
  ensure_shape(patches_, {B, N, C * patch_ * patch_}, images.dtype(), images.device());
  if (images.device() == Device::cuda)
    cuda_moves::images_to_patches(patches_, images, patch_);
  else if (images.dtype() == DType::f64)
    images_to_patches(patches_.data<double>(), images.data<double>(), B, C, H, W, patch_);
  else
    images_to_patches(patches_.data<float>(), images.data<float>(), B, C, H, W, patch_);
  return proj.forward(patches_);
}

void PatchEmbedding::backward(const Tensor& dy) {
  ops::linear_backward(nullptr, proj.weight.grad, &proj.bias.grad, dy, patches_, proj.weight.value);
}

}  // namespace tr
