#include "layers/cpu/bf16.h"

#include <atomic>

namespace tr::cpu {

namespace {
std::atomic<bool> g_bf16_products{false};
constexpr std::int64_t kParallelMin = 1 << 16;
}  // namespace

void f32_to_bf16(std::uint16_t* out, const float* in, std::int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (std::int64_t i = 0; i < n; ++i) out[i] = f32_to_bf16_bits(in[i]);
}

void bf16_to_f32(float* out, const std::uint16_t* in, std::int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (std::int64_t i = 0; i < n; ++i) out[i] = bf16_bits_to_f32(in[i]);
}

void set_bf16_products(bool on) {
  g_bf16_products.store(on);
}

bool bf16_products() {
  return g_bf16_products.load(std::memory_order_relaxed);
}

}  // namespace tr::cpu
