#include "layers/widened.h"

#include "layers/op_profile.h"

namespace tr {

// On a GPU every widening is a conversion pass the bf16 kernels exist to avoid: counted (and
// timed) by the op profile, so that tests can check that a bf16 step takes none.
constexpr const char* kGpuWidening = "widened_bf16_on_cuda";

const Tensor& Widened::in(const Tensor& t) {
  if (!t.defined() || t.dtype() != DType::bf16) return t;
  const OpTimer timer(t.device() == Device::cuda ? kGpuWidening : nullptr);
  Tensor& wide = copies_.emplace_back(Tensor::empty(t.shape(), DType::f32, t.device()));
  wide.copy_from(t);
  return wide;
}

Tensor& Widened::out(Tensor& t, bool accumulating) {
  if (!t.defined() || t.dtype() != DType::bf16) return t;
  const OpTimer timer(t.device() == Device::cuda ? kGpuWidening : nullptr);
  Tensor& wide = copies_.emplace_back(Tensor::empty(t.shape(), DType::f32, t.device()));
  if (accumulating) wide.copy_from(t);
  outputs_.emplace_back(&t, &wide);
  return wide;
}

void Widened::finish() {
  for (auto& [target, wide] : outputs_) target->copy_from(*wide);
  outputs_.clear();
}

DType promoted_dtype(const Tensor& a, const Tensor& b) {
  if (a.dtype() == b.dtype()) return a.dtype();
  if (a.dtype() == DType::f64 || b.dtype() == DType::f64) return DType::f64;
  return DType::f32;
}

}  // namespace tr
