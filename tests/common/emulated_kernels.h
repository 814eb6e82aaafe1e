// Helpers of the emulated CUDA kernel tests (tests/layers/test_*_kernels_emulated.cpp): random
// inputs, NaN-filled outputs (an element a kernel does not write fails the comparison), bf16
// storage as the kernels see it (cuda::bf16, the bits) and as the CPU ops see it (bf16
// tensors), and the error measures of the GPU tests (tests/gpu/cuda_test.h).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "common/error_measures.h"
#include "layers/cpu/bf16.h"
#include "layers/tensor.h"

namespace tr::emu_test {

using i64 = std::int64_t;
using F = std::vector<float>;
using Bits = std::vector<std::uint16_t>;  // bf16 storage (cuda::bf16 elements)

inline F random_floats(i64 n, std::uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  F v(static_cast<std::size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}
// n NaNs: the initial contents of every output a kernel overwrites.
inline F poison(i64 n) {
  return F(static_cast<std::size_t>(n), NAN);
}
inline Bits poison_bf16(i64 n) {
  return Bits(static_cast<std::size_t>(n), 0xFFFF);  // a NaN
}

inline Bits to_bf16(const F& v) {
  Bits b(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) b[i] = cpu::f32_to_bf16_bits(v[i]);
  return b;
}
inline F widen(const Bits& b) {
  F v(b.size());
  for (std::size_t i = 0; i < b.size(); ++i) v[i] = cpu::bf16_bits_to_f32(b[i]);
  return v;
}

// Host tensors of the CPU ops from the kernels' storage, and back.
inline Tensor tensor(const F& v, const Shape& shape) {
  Tensor t = Tensor::empty(shape, DType::f32);
  std::copy(v.begin(), v.end(), t.data<float>());
  return t;
}
inline Tensor tensor(const Bits& v, const Shape& shape) {
  Tensor t = Tensor::empty(shape, DType::bf16);
  std::memcpy(t.raw(), v.data(), v.size() * sizeof(std::uint16_t));
  return t;
}
// The values of an f32 or bf16 tensor, as floats.
inline F values(const Tensor& t) {
  if (t.dtype() == DType::f32) return F(t.data<float>(), t.data<float>() + t.numel());
  Bits b(static_cast<std::size_t>(t.numel()));
  std::memcpy(b.data(), t.raw(), b.size() * sizeof(std::uint16_t));
  return widen(b);
}

using testing::max_rel_error;
using testing::norm_rel_error;

// bf16 products on the CPU for a scope (the CPU ops then round as the CUDA bf16 path does).
struct Bf16Products {
  Bf16Products() { cpu::set_bf16_products(true); }
  ~Bf16Products() { cpu::set_bf16_products(false); }
  Bf16Products(const Bf16Products&) = delete;
  Bf16Products& operator=(const Bf16Products&) = delete;
};

}  // namespace tr::emu_test
