// Device discovery, the CUDA buffer pool and host <-> device copies.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "gpu/cuda_test.h"
#include "layers/cuda/kernels.h"
#include "layers/cuda/runtime.h"

namespace tr {
namespace {

using gpu_test::random_floats;

TEST(CudaDevice, CountIsZeroOrReasonIsEmpty) {
  // Runs everywhere: where no GPU is usable a reason is given, where one is none is.
  EXPECT_TRUE(cuda_built());
  if (cuda_device_count() == 0)
    EXPECT_FALSE(cuda_unavailable_reason().empty());
  else
    EXPECT_TRUE(cuda_unavailable_reason().empty());
}

TEST(CudaDevice, ToTheSameDeviceIsTheSameTensor) {
  const Tensor t = Tensor::zeros({3}, DType::f32);
  EXPECT_TRUE(to_device(t, Device::cpu).same_buffer(t));
}

TEST(CudaDevice, GuardRestoresTheCurrentDevice) {
  TR_REQUIRE_CUDA();
  const int before = cuda::current_device();
  {
    cuda::DeviceGuard guard(cuda_device_count() - 1);
    EXPECT_EQ(cuda::current_device(), cuda_device_count() - 1);
  }
  EXPECT_EQ(cuda::current_device(), before);
}

// The probe of the build's kernel image runs on a GPU it was built for (the gpu runs use sm_90
// builds on Hopper), and bf16 is refused below compute capability 8.0 only.
TEST(CudaDevice, ThisBuildCanTrainOnTheGpu) {
  TR_REQUIRE_CUDA();
  EXPECT_EQ(cuda::kernel_image_problem(), "");
  EXPECT_EQ(cuda_device_problem(MatmulPrecision::fp32), "");
  if (cuda::compute_capability() >= 80)
    EXPECT_EQ(cuda_device_problem(MatmulPrecision::bf16), "");
  else
    EXPECT_NE(cuda_device_problem(MatmulPrecision::bf16).find("bf16"), std::string::npos);
}

TEST(CudaTensor, Bf16StorageRoundTrips) {
  TR_REQUIRE_CUDA();
  Tensor h = Tensor::empty({100}, DType::bf16);
  auto* bits = static_cast<std::uint16_t*>(h.raw());
  for (int i = 0; i < 100; ++i) bits[i] = static_cast<std::uint16_t>(i * 611);
  const Tensor back = to_device(to_device(h, Device::cuda), Device::cpu);
  EXPECT_EQ(std::memcmp(back.raw(), h.raw(), h.bytes()), 0);
}

TEST(CudaTensor, RoundTripKeepsTheBits) {
  TR_REQUIRE_CUDA();
  const auto values = random_floats(1000, 1);
  Tensor d = gpu_test::device_tensor(values, {10, 100});
  EXPECT_EQ(d.device(), Device::cuda);
  EXPECT_EQ(gpu_test::to_host_vector<float>(d), values);
  Tensor c = d.clone();  // device to device
  EXPECT_FALSE(c.same_buffer(d));
  EXPECT_EQ(gpu_test::to_host_vector<float>(c), values);
}

// Uploads return before the transfer (pinned staging): the source may be overwritten at once,
// more copies may be in flight than there are staging buffers (each then waits for the oldest),
// and a copy larger than a buffer grows it. Every upload must arrive as it was at the call.
TEST(CudaTensor, UploadsAreStagedCopiesOfTheSourceAtTheCall) {
  TR_REQUIRE_CUDA();
  std::vector<Tensor> devices;
  Tensor host_small = Tensor::empty({1000}, DType::f32),
         host_big = Tensor::empty({4096}, DType::f32);
  // Slow work queued first, so that the uploads pile up behind it and the staging buffers are
  // still in flight when they are needed again (the wait-for-the-oldest path).
  const std::int64_t m = 4096;
  Tensor a = Tensor::zeros({m, m}, DType::f32, Device::cuda),
         c = Tensor::zeros({m, m}, DType::f32, Device::cuda);
  for (int r = 0; r < 4; ++r)
    cuda::gemm(false, false, m, m, m, 1.0f, a.data<float>(), m, a.data<float>(), m, 0.0f,
               c.data<float>(), m);
  for (int i = 0; i < 40; ++i) {
    const std::int64_t n = i % 7 == 6 ? 4096 : 1000;
    Tensor& host = n == 4096 ? host_big : host_small;
    float* h = host.data<float>();
    for (std::int64_t j = 0; j < n; ++j) h[j] = static_cast<float>(i * 10000 + j);
    Tensor d = Tensor::empty({n}, DType::f32, Device::cuda);
    d.copy_from(host);
    std::fill(h, h + n, -1.0f);  // overwritten right after the call
    devices.push_back(d);
  }
  // One copy far larger than the 1 MB first allocation of a staging buffer.
  Tensor big_host = Tensor::empty({1 << 20}, DType::f32);
  for (std::int64_t j = 0; j < (1 << 20); ++j) big_host.data<float>()[j] = static_cast<float>(j);
  Tensor big = Tensor::empty({1 << 20}, DType::f32, Device::cuda);
  big.copy_from(big_host);
  big_host.zero_();
  for (int i = 0; i < 40; ++i) {
    const std::vector<float> got = gpu_test::to_host_vector<float>(devices[i]);
    bool all = true;
    for (std::size_t j = 0; j < got.size(); ++j)
      all = all && got[j] == static_cast<float>(i * 10000 + j);
    EXPECT_TRUE(all) << "upload " << i;
  }
  const std::vector<float> got = gpu_test::to_host_vector<float>(big);
  bool all = true;
  for (std::size_t j = 0; j < got.size(); ++j) all = all && got[j] == static_cast<float>(j);
  EXPECT_TRUE(all) << "the large upload";
}

TEST(CudaTensor, ZerosAreZero) {
  TR_REQUIRE_CUDA();
  Tensor z = Tensor::zeros({257}, DType::f32, Device::cuda);
  for (float x : gpu_test::to_host_vector<float>(z)) EXPECT_EQ(x, 0.0f);
}

TEST(CudaTensor, PoolReusesReleasedBlocks) {
  TR_REQUIRE_CUDA();
  BufferPool& pool = BufferPool::instance(Device::cuda);
  { Tensor warm = Tensor::empty({1 << 20}, DType::f32, Device::cuda); }
  const auto before = pool.system_allocations();
  for (int i = 0; i < 5; ++i) Tensor t = Tensor::empty({1 << 20}, DType::f32, Device::cuda);
  EXPECT_EQ(pool.system_allocations(), before);
  pool.trim();
  EXPECT_EQ(pool.cached_bytes(), 0u);
}

// peak_memory_bytes (the metrics' peak_memory_mb) counts the ops' stream-ordered scratch too:
// a product under bf16 operands rounds its fp32 operands into scratch, 2 bytes per element.
TEST(CudaTensor, PeakMemoryCountsTheOpsScratch) {
  TR_REQUIRE_CUDA();
  const std::int64_t n = 1024;
  Tensor a = Tensor::zeros({n, n}, DType::f32, Device::cuda),
         c = Tensor::zeros({n, n}, DType::f32, Device::cuda);
  cuda::synchronize();
  reset_peak_memory(Device::cuda);
  const std::size_t before = peak_memory_bytes(Device::cuda);
  cuda::set_bf16_matmuls(true);
  cuda::gemm(false, true, n, n, n, 1.0f, a.data<float>(), n, a.data<float>(), n, 0.0f,
             c.data<float>(), n);
  cuda::set_bf16_matmuls(false);
  cuda::synchronize();
  const std::size_t rounded = 2 * 2 * n * n;  // both operands, 2 bytes per element
  EXPECT_GE(cuda::scratch_peak_bytes(), rounded);
  EXPECT_GE(peak_memory_bytes(Device::cuda), before + rounded);
}

}  // namespace
}  // namespace tr
