#include "trainer/device_peak.h"

namespace tr {

namespace {

struct Peak {
  const char* name_fragment;  // first match wins: specific names before general ones
  double fp32, bf16;
};

constexpr Peak kPeaks[] = {
    {"H200", 66.9, 989.4},      {"H100 80GB HBM3", 66.9, 989.4}, {"H100 SXM", 66.9, 989.4},
    {"H100 PCIe", 51.2, 756.5}, {"H100", 66.9, 989.4},           {"A100", 19.5, 312.0},
};

}  // namespace

double dense_peak_tflops(const std::string& gpu_name, const std::string& precision) {
  for (const Peak& p : kPeaks) {
    if (gpu_name.find(p.name_fragment) == std::string::npos) continue;
    if (precision == "fp32") return p.fp32;
    if (precision == "bf16") return p.bf16;
    return 0.0;
  }
  return 0.0;
}

}  // namespace tr
