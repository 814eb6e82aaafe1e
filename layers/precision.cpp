#include "layers/precision.h"

#include <atomic>

namespace tr {

namespace {
std::atomic<bool> g_bf16_activations{false};
}  // namespace

void set_bf16_activations(bool on) {
  g_bf16_activations.store(on);
}

bool bf16_activations() {
  return g_bf16_activations.load(std::memory_order_relaxed);
}

DType wide_dtype(DType dtype) {
  return dtype == DType::bf16 ? DType::f32 : dtype;
}

DType block_activation_dtype(DType input) {
  if (input == DType::f64) return DType::f64;
  return bf16_activations() ? DType::bf16 : DType::f32;
}

}  // namespace tr
