// cuDNN's attention graphs (layers/cuda/cudnn/sdpa_graphs.h) planned for an H100 and an A100
// described by their properties, on a machine without a GPU: cuDNN's heuristics must offer
// engines for every mask combination and head width the trainer sends it, and an engine's
// kernel must compile for sm_90 and sm_80. This is what a GPU run would reject first (a graph
// cuDNN does not recognise as attention), checked in CI. Running the plans is
// tests/gpu/test_cuda_cudnn_attention.cpp.
//
// cuDNN's compiled engines load the CUDA driver library before compiling; where none is
// installed, the toolkit's stub (lib64/stubs/libcuda.so, which fails every call) stands in, so
// that compilation runs and only the final module load fails.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "layers/cuda/cudnn/sdpa_graphs.h"

namespace tr::cudnn {

void PrintTo(const SdpaShape& s, std::ostream* os) {
  *os << to_string(s);
}

namespace {

// The GPUs the graphs are planned for, described as cuDNN's device-property JSON takes them:
// the values cudaDeviceGetAttribute reports on each (cuDNN's heuristics and kernel selection read
// the architecture, deviceVer, the SM count and the shared memory). The build's default
// architectures: an H100 SXM (sm_90, 132 SMs, 227 KiB per block) and an A100 SXM (sm_80, 108
// SMs, 163 KiB per block).
struct DescribedGpu {
  const char* name;
  const char* json;
};
constexpr DescribedGpu kGpus[] = {
    {"H100", R"({"deviceName":"NVIDIA H100 80GB HBM3","deviceVer":900,"cudaDeviceId":0,)"
             R"("driverVer":13000,"totalGlobalMem":85045477376,"multiProcessorCount":132,)"
             R"("maxGridSize":[2147483647,65535,65535],"maxBlockSize":[1024,1024,64],)"
             R"("maxThreadsPerBlock":1024,"maxThreadsPerSM":2048,"maxCtasPerSM":32,)"
             R"("regsPerBlock":65536,"maxRegistersPerSM":65536,"warpSize":32,)"
             R"("maxSharedMemoryPerBlock":49152,"maxSharedMemoryPerBlockOptin":232448,)"
             R"("reservedSharedMemoryPerBlock":1024,"l2CacheSize":52428800,)"
             R"("smClockRateKHz":1980000,"memClockRateKHz":2619000,"pciDeviceId":0,)"
             R"("isTccDriver":0,"supportCoopLaunch":1})"},
    {"A100", R"({"deviceName":"NVIDIA A100-SXM4-80GB","deviceVer":800,"cudaDeviceId":0,)"
             R"("driverVer":13000,"totalGlobalMem":85089566720,"multiProcessorCount":108,)"
             R"("maxGridSize":[2147483647,65535,65535],"maxBlockSize":[1024,1024,64],)"
             R"("maxThreadsPerBlock":1024,"maxThreadsPerSM":2048,"maxCtasPerSM":32,)"
             R"("regsPerBlock":65536,"maxRegistersPerSM":65536,"warpSize":32,)"
             R"("maxSharedMemoryPerBlock":49152,"maxSharedMemoryPerBlockOptin":166912,)"
             R"("reservedSharedMemoryPerBlock":1024,"l2CacheSize":41943040,)"
             R"("smClockRateKHz":1410000,"memClockRateKHz":1593000,"pciDeviceId":0,)"
             R"("isTccDriver":0,"supportCoopLaunch":1})"}};

bool driver_library_loadable() {
  if (dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL)) return true;
  std::string home = std::getenv("CUDA_HOME") ? std::getenv("CUDA_HOME") : "/usr/local/cuda";
  return dlopen((home + "/lib64/stubs/libcuda.so").c_str(), RTLD_NOW | RTLD_GLOBAL) != nullptr;
}

class CudnnGraphs : public ::testing::TestWithParam<SdpaShape> {
 protected:
  void SetUp() override {
    if (!api()) GTEST_SKIP() << "cuDNN not loadable: " << unavailable_reason();
    if (!driver_library_loadable()) GTEST_SKIP() << "no CUDA driver library, not even the stub";
  }

  // On each described GPU, heuristics offer at least one engine, and one of them compiles.
  static void expect_planned(Graph graph, const char* what) {
    for (const DescribedGpu& gpu : kGpus) {
      Descriptor target = device_target_from_json(gpu.json);
      std::vector<Descriptor> configs = engine_configs(graph, target);
      EXPECT_FALSE(configs.empty())
          << what << " on an " << gpu.name << ": cuDNN offers no engine for the graph";
      if (configs.empty()) continue;
      std::string why;
      EXPECT_TRUE(first_plan(graph, configs, target, why, /*compile_only=*/true).has_value())
          << what << " on an " << gpu.name << ": no engine configuration compiles: " << why;
    }
  }
};

TEST_P(CudnnGraphs, ForwardIsPlanned) {
  expect_planned(sdpa_forward_graph(GetParam()), "forward");
}

TEST_P(CudnnGraphs, BackwardIsPlanned) {
  expect_planned(sdpa_backward_graph(GetParam()), "backward");
}

std::string name(const ::testing::TestParamInfo<SdpaShape>& info) {
  const SdpaShape& s = info.param;
  std::ostringstream out;
  out << "B" << s.B << "H" << s.H << "Tq" << s.Tq << "Tk" << s.Tk << "Dh" << s.Dh
      << (s.padding ? "_padding" : "") << (s.causal ? "_causal" : "")
      << (s.dropout ? "_dropout" : "") << (s.philox_keep > 0 ? "_philox" : "");
  return out.str();
}

// ViT-B/16 (197 tokens, heads of 64), the d-1024 encoder-decoder's self and cross attention
// (heads of 64, padded sources, causal decoder), heads of 128 and an odd length.
INSTANTIATE_TEST_SUITE_P(Shapes, CudnnGraphs,
                         ::testing::Values(SdpaShape{128, 12, 197, 197, 64, false, false},
                                           SdpaShape{32, 16, 256, 256, 64, true, false},
                                           SdpaShape{32, 16, 256, 256, 64, false, true},
                                           SdpaShape{32, 16, 256, 256, 64, true, true},
                                           SdpaShape{32, 16, 255, 256, 64, true, false},
                                           SdpaShape{4, 8, 100, 77, 128, true, false},
                                           SdpaShape{4, 8, 64, 64, 32, false, true},
                                           SdpaShape{32, 16, 256, 256, 64, true, false, true},
                                           SdpaShape{32, 16, 256, 256, 64, false, true, true},
                                           SdpaShape{128, 12, 197, 197, 64, false, false, true},
                                           // dropout drawn by cuDNN's RNG (Philox)
                                           SdpaShape{32, 16, 256, 256, 64, true, false, true, 0.9},
                                           SdpaShape{32, 16, 256, 256, 64, false, true, true, 0.9},
                                           SdpaShape{128, 12, 197, 197, 64, false, false, true,
                                                     0.9}),
                         name);

// The tensors a call must bind: the runtime binds exactly these (cudnn_attention.cu).
TEST(CudnnGraphTensors, AreTheCallsOperandsAndScalars) {
  if (!api()) GTEST_SKIP() << "cuDNN not loadable: " << unavailable_reason();
  const auto sorted = [](std::vector<std::int64_t> v) {
    std::sort(v.begin(), v.end());
    return v;
  };
  const SdpaShape plain{2, 2, 8, 8, 64, false, false}, padded{2, 2, 8, 8, 64, true, false},
      causal{2, 2, 8, 8, 64, false, true};
  using V = std::vector<std::int64_t>;
  EXPECT_EQ(sorted(sdpa_forward_graph(plain).bound_uids), (V{kQ, kK, kV, kO, kStats, kScale}));
  EXPECT_EQ(sorted(sdpa_forward_graph(padded).bound_uids),
            (V{kQ, kK, kV, kO, kStats, kScale, kSeqLenQ, kSeqLenKv, kNegInf}));
  EXPECT_EQ(sorted(sdpa_forward_graph(causal).bound_uids),
            (V{kQ, kK, kV, kO, kStats, kScale, kNegInf}));
  EXPECT_EQ(sorted(sdpa_backward_graph(padded).bound_uids),
            (V{kQ, kK, kV, kO, kStats, kScale, kSeqLenQ, kSeqLenKv, kNegInf, kDO, kDQ, kDK, kDV,
               kDropoutScaleInv, kSoftmaxSum}));
  const SdpaShape masked{2, 2, 8, 8, 64, false, false, true},
      drawn{2, 2, 8, 8, 64, false, false, true, 0.9};
  EXPECT_EQ(sorted(sdpa_forward_graph(masked).bound_uids),
            (V{kQ, kK, kV, kO, kStats, kScale, kDropoutMask, kDropoutScale}));
  EXPECT_EQ(sorted(sdpa_forward_graph(drawn).bound_uids),
            (V{kQ, kK, kV, kO, kStats, kScale, kDropoutScale, kDropoutSeed, kDropoutOffset}));
  EXPECT_EQ(sorted(sdpa_backward_graph(drawn).bound_uids),
            (V{kQ, kK, kV, kO, kStats, kScale, kDO, kDQ, kDK, kDV, kDropoutScaleInv, kSoftmaxSum,
               kDropoutScale, kDropoutSeed, kDropoutOffset}));
}

TEST(CudnnApi, ReportsItsVersionOrWhyNot) {
  if (api()) {
    EXPECT_GE(version(), 90800u);
    EXPECT_EQ(unavailable_reason(), "");
  } else {
    EXPECT_NE(unavailable_reason(), "");
  }
}

}  // namespace
}  // namespace tr::cudnn
