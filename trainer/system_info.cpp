#include "trainer/system_info.h"

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>

#include "layers/device.h"
#include "parallel/nccl_communicator.h"

namespace tr {

namespace {

std::string built(bool yes) {
  return yes ? "built" : "not built";
}

// "fp32 and bf16", "fp32 only (reason bf16 is refused)" or "nothing (reason)".
std::string trains(const std::string& fp32_problem, const std::string& bf16_problem) {
  if (!fp32_problem.empty()) return "cannot train: " + fp32_problem;
  if (!bf16_problem.empty()) return "trains in fp32 only: " + bf16_problem;
  return "trains in fp32 and bf16";
}

// Which heads the current GPU's attention runs on the flash kernels: "flash attention for
// heads up to 128", per precision where the two differ.
std::string flash_heads(bool bf16_trains) {
  const std::int64_t f32 = widest_flash_attention_head(false);
  const std::int64_t b16 = bf16_trains ? widest_flash_attention_head(true) : f32;
  const auto up_to = [](std::int64_t Dh) {
    return Dh > 0 ? "up to " + std::to_string(Dh) : std::string("none");
  };
  std::string out = "flash attention for heads " + up_to(f32);
  if (b16 != f32) out += " in fp32, " + up_to(b16) + " in bf16";
  if (std::min(f32, b16) < 128) out += " (wider ones: the materialised kernels)";
  return out;
}

}  // namespace

std::string system_info() {
  std::string out = "trainer build: CUDA backend " + built(cuda_built());
  if (cuda_built()) out += " (architectures " + cuda_architectures() + ")";
  out += ", NCCL " + built(nccl_built());
#ifdef TR_HAVE_MPI
  out += ", MPI built\n";
#else
  out += ", MPI not built\n";
#endif
  if (cuda_built()) {
    out += "cuDNN (bf16 attention): " + cudnn_status() + "\n";
    out += "own bf16 attention kernels: " + own_bf16_attention_kernels() + "\n";
  }
  out += "CPU: " + std::to_string(omp_get_max_threads()) + " OpenMP threads\n";
  const int gpus = cuda_device_count();
  if (gpus == 0) return out + "GPUs: none usable (" + cuda_unavailable_reason() + ")\n";
  out += "GPUs: " + std::to_string(gpus) + "\n";
  for (int i = 0; i < gpus; ++i) {
    const CudaDeviceInfo d = cuda_device_info(i);
    select_cuda_device(i);
    const std::string fp32_problem = cuda_device_problem(MatmulPrecision::fp32),
                      bf16_problem = cuda_device_problem(MatmulPrecision::bf16);
    char memory[32];
    std::snprintf(memory, sizeof memory, "%.1f GiB",
                  static_cast<double>(d.memory_bytes) / (1024.0 * 1024.0 * 1024.0));
    out += "GPU " + std::to_string(i) + ": " + d.name + ", compute capability " +
           std::to_string(d.compute_capability / 10) + "." +
           std::to_string(d.compute_capability % 10) + ", " + memory + ": " +
           trains(fp32_problem, bf16_problem);
    if (fp32_problem.empty()) out += "; " + flash_heads(bf16_problem.empty());
    out += "\n";
  }
  select_cuda_device(0);
  return out;
}

}  // namespace tr
