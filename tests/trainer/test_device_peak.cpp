// The peak table behind the metrics' mfu: data-sheet values by GPU name and precision, 0 where
// unknown (no mfu then).
#include <gtest/gtest.h>

#include "trainer/device_peak.h"

namespace tr {
namespace {

TEST(DevicePeak, KnownGpusByPrecision) {
  EXPECT_DOUBLE_EQ(dense_peak_tflops("NVIDIA H100 80GB HBM3", "fp32"), 66.9);
  EXPECT_DOUBLE_EQ(dense_peak_tflops("NVIDIA H100 80GB HBM3", "bf16"), 989.4);
  EXPECT_DOUBLE_EQ(dense_peak_tflops("NVIDIA H100 PCIe", "bf16"), 756.5);
  EXPECT_DOUBLE_EQ(dense_peak_tflops("NVIDIA H200", "fp32"), 66.9);
  EXPECT_DOUBLE_EQ(dense_peak_tflops("NVIDIA A100-SXM4-80GB", "bf16"), 312.0);
}

TEST(DevicePeak, UnknownGpuOrPrecisionIsZero) {
  EXPECT_EQ(dense_peak_tflops("NVIDIA GeForce RTX 4090", "fp32"), 0.0);
  EXPECT_EQ(dense_peak_tflops("", "fp32"), 0.0);
  EXPECT_EQ(dense_peak_tflops("NVIDIA H100 80GB HBM3", "fp8"), 0.0);
}

}  // namespace
}  // namespace tr
