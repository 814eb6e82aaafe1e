// One AdamW update of one element, shared by the CPU kernel (optimizer_kernels.cpp) and the
// CUDA kernel (layers/cuda/elementwise.cu): both devices run these operations, in the order of
// torch.optim.AdamW's single-tensor path, with the same constants formed once on the host
// (in double, as Python does, rounded to T once).
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define TR_ADAMW_FN __host__ __device__ __forceinline__
#else
#define TR_ADAMW_FN inline
#endif

namespace tr::cpu {

template <typename T>
struct AdamWConstants {
  T beta1, beta2, eps;
  T decay_factor;  // 1 - lr * weight_decay: decoupled decay, applied before the moments
  T one_minus_b1, one_minus_b2;
  T neg_step_size;          // -lr / (1 - beta1^step)
  T bias_correction2_sqrt;  // sqrt(1 - beta2^step)
};

template <typename T>
AdamWConstants<T> adamw_constants(T lr, T beta1, T beta2, T eps, T weight_decay,
                                  std::int64_t step) {
  const double lr_d = lr, b1 = beta1, b2 = beta2;
  const double bias_correction1 = 1.0 - std::pow(b1, static_cast<double>(step));
  const double bias_correction2 = 1.0 - std::pow(b2, static_cast<double>(step));
  return {beta1,
          beta2,
          eps,
          static_cast<T>(1.0 - lr_d * static_cast<double>(weight_decay)),
          static_cast<T>(1.0 - b1),
          static_cast<T>(1.0 - b2),
          static_cast<T>(-(lr_d / bias_correction1)),
          static_cast<T>(std::sqrt(bias_correction2))};
}

TR_ADAMW_FN float adamw_sqrt(float x) {
#if defined(__CUDA_ARCH__)
  return sqrtf(x);
#else
  return std::sqrt(x);
#endif
}
TR_ADAMW_FN double adamw_sqrt(double x) {
#if defined(__CUDA_ARCH__)
  return ::sqrt(x);
#else
  return std::sqrt(x);
#endif
}

template <typename T>
TR_ADAMW_FN void adamw_element(T& param, T grad, T& m, T& v, const AdamWConstants<T>& c) {
  const T p = param * c.decay_factor;
  const T mi = m * c.beta1 + c.one_minus_b1 * grad;
  const T vi = v * c.beta2 + c.one_minus_b2 * grad * grad;
  m = mi;
  v = vi;
  const T denom = adamw_sqrt(vi) / c.bias_correction2_sqrt + c.eps;
  param = p + c.neg_step_size * (mi / denom);
}

}  // namespace tr::cpu
