// bf16 storage on the CPU: conversions with the rounding the GPU uses (round to nearest, ties
// to even; NaN stays NaN), and the switch that makes the fp32 GEMM take bf16-rounded operands.
//
// train.precision: bf16 on the CPU computes what the CUDA bf16 path computes: products of
// bf16 operands accumulated in fp32, activations stored as bf16. It is the reference the GPU
// is compared with, and halves the activation memory; it is not faster than fp32 here (the
// operands are widened to fp32 for OpenBLAS).
#pragma once

#include <cstdint>
#include <cstring>

namespace tr::cpu {

inline std::uint16_t f32_to_bf16_bits(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even (overflows to inf)
  return static_cast<std::uint16_t>(u >> 16);
}

inline float bf16_bits_to_f32(std::uint16_t b) {
  const std::uint32_t u = static_cast<std::uint32_t>(b) << 16;
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// The nearest bf16 value, as a float.
inline float round_to_bf16(float x) {
  return bf16_bits_to_f32(f32_to_bf16_bits(x));
}

void f32_to_bf16(std::uint16_t* out, const float* in, std::int64_t n);
void bf16_to_f32(float* out, const std::uint16_t* in, std::int64_t n);

// While on, gemm<float> multiplies bf16-rounded copies of A and B (fp32 accumulation, fp32 C),
// and attention takes its per-head GEMM path (whose products go through gemm<float>), so that
// every CPU matrix product rounds its operands as the CUDA bf16 products do. Process-wide (a
// process trains one configuration); gemm<double> is never affected.
void set_bf16_products(bool on);
bool bf16_products();

}  // namespace tr::cpu
