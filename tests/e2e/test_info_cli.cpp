// `trainer info` reports the build and this machine: the CUDA backend (and its architectures),
// NCCL, MPI, cuDNN and the own bf16 attention kernels (CUDA builds), the OpenMP threads, and either
// why no GPU is usable or each GPU with what this build can train on it. Exit 0 either way.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "e2e/cli_runner.h"
#include "layers/device.h"

namespace tr {
namespace {

using testing::run_trainer;

TEST(InfoCli, ReportsTheBuildAndTheGpus) {
  const testing::CliResult r = run_trainer("info");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.rfind("trainer build: CUDA backend ", 0), 0u) << r.output;
  EXPECT_NE(r.output.find("OpenMP threads"), std::string::npos) << r.output;
  if (cuda_built()) {
    EXPECT_NE(r.output.find("(architectures " + cuda_architectures() + ")"), std::string::npos)
        << r.output;
    EXPECT_NE(r.output.find("cuDNN (bf16 attention): " + cudnn_status() + "\n"), std::string::npos)
        << r.output;
    EXPECT_NE(cudnn_status(), "");
    EXPECT_NE(r.output.find("own bf16 attention kernels: " + own_bf16_attention_kernels() + "\n"),
              std::string::npos)
        << r.output;
    const char* family = std::getenv("TR_FLASH_KERNELS");
    if (family == nullptr || std::string(family) != "wmma") {  // the default
      EXPECT_EQ(own_bf16_attention_kernels().rfind("mma.sync", 0), 0u);
    } else {
      EXPECT_EQ(own_bf16_attention_kernels().rfind("WMMA", 0), 0u);
    }
  } else {
    EXPECT_EQ(r.output.find("cuDNN"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("attention kernels"), std::string::npos) << r.output;
  }
  if (cuda_device_count() == 0) {
    EXPECT_NE(r.output.find("GPUs: none usable (" + cuda_unavailable_reason() + ")"),
              std::string::npos)
        << r.output;
  } else {
    EXPECT_NE(r.output.find("GPU 0: " + cuda_device_info(0).name), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("trains in fp32"), std::string::npos) << r.output;
  }
}

}  // namespace
}  // namespace tr
