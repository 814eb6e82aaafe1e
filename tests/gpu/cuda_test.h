// Shared helpers of the gpu tests: skipping where no GPU is present, and moving random data
// between host and device.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "common/error_measures.h"
#include "layers/cpu/bf16.h"
#include "layers/cuda/kernels.h"
#include "layers/device.h"
#include "layers/tensor.h"

// Every gpu test starts with this: CI builds them without a GPU, so they must skip, saying why.
#define TR_REQUIRE_CUDA()                                                           \
  do {                                                                              \
    if (::tr::cuda_device_count() == 0)                                             \
      GTEST_SKIP() << "no CUDA device (" << ::tr::cuda_unavailable_reason() << ")"; \
  } while (0)

namespace tr::gpu_test {

inline std::vector<float> random_floats(std::int64_t n, std::uint32_t seed, float lo = -1.0f,
                                        float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = dist(rng);
  return v;
}

// n NaNs: the initial contents of every output a kernel overwrites.
inline std::vector<float> poison(std::int64_t n) {
  return std::vector<float>(static_cast<std::size_t>(n), NAN);
}

template <typename T>
Tensor host_tensor(const std::vector<T>& values, const Shape& shape) {
  Tensor t = Tensor::empty(shape, dtype_of<T>());
  std::copy(values.begin(), values.end(), t.data<T>());
  return t;
}

template <typename T>
Tensor device_tensor(const std::vector<T>& values, const Shape& shape) {
  return to_device(host_tensor(values, shape), Device::cuda);
}

// A device tensor of NaNs in `dtype` (f32 or bf16), so that elements a kernel does not write show.
inline Tensor poisoned(const Shape& shape, DType dtype) {
  Tensor f = host_tensor(poison(shape_numel(shape)), shape);
  Tensor t = Tensor::empty(shape, dtype);
  t.copy_from(f);
  return to_device(t, Device::cuda);
}

template <typename T>
std::vector<T> to_host_vector(const Tensor& t) {
  Tensor h = to_device(t, Device::cpu);
  return std::vector<T>(h.data<T>(), h.data<T>() + h.numel());
}

using testing::max_rel_error;
using testing::norm_rel_error;

// A device copy of a host tensor (undefined stays undefined).
inline Tensor cu(const Tensor& t) {
  return t.defined() ? to_device(t, Device::cuda) : Tensor();
}

// The values of a float tensor of any dtype (f32, bf16) on any device, as f32 on the host.
inline std::vector<float> values(const Tensor& t) {
  const Tensor h = to_device(t, Device::cpu);
  Tensor f = Tensor::empty(h.shape(), DType::f32);
  f.copy_from(h);
  return std::vector<float>(f.data<float>(), f.data<float>() + f.numel());
}

// A fixture whose tests skip without a GPU and run with bf16 products on both devices (the CPU
// twins round their products' operands as the GPU does), fp32 again afterwards.
template <typename Base = ::testing::Test>
class Bf16ProductsTest : public Base {
 protected:
  void SetUp() override {
    TR_REQUIRE_CUDA();
    cpu::set_bf16_products(true);
    cuda::set_bf16_matmuls(true);
  }
  void TearDown() override {
    cpu::set_bf16_products(false);
    cuda::set_bf16_matmuls(false);
  }
};

// Bf16ProductsTest where cuDNN's attention is used (skipping, saying why, where it is not), with
// every shape planned at its first call.
template <typename Base = ::testing::Test>
class CudnnAttentionTest : public Bf16ProductsTest<Base> {
 protected:
  void SetUp() override {
    Bf16ProductsTest<Base>::SetUp();
    if (this->IsSkipped()) return;
    if (!cuda::cudnn_attention_available())
      GTEST_SKIP() << "cuDNN not used here: " << cuda::cudnn_attention_status();
    cuda::set_cudnn_plan_policy(1, 1e9);
  }
};

// A tensor's device data as the attention kernels take it (undefined tensors: null).
inline cuda::bf16* bf16_data(const Tensor& t) {
  return static_cast<cuda::bf16*>(t.raw());
}
inline float* f32_data(const Tensor& t) {
  return static_cast<float*>(t.raw());
}
inline const std::int32_t* lengths_data(const Tensor& t) {
  return t.defined() ? static_cast<const std::int32_t*>(t.raw()) : nullptr;
}

}  // namespace tr::gpu_test
