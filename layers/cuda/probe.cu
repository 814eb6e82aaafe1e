// Whether the current GPU can run this build's kernels: a build carries machine code for the
// architectures it was compiled for (CMAKE_CUDA_ARCHITECTURES, default sm_80 and sm_90 plus
// compute_90 PTX), and a GPU outside them fails at its first launch. Asking the runtime for an
// empty kernel's attributes loads its image for the current device without launching it.
#include <cuda_runtime.h>

#include <string>

#include "layers/cuda/runtime.h"

namespace tr::cuda {

namespace {
__global__ void probe_kernel() {}
}  // namespace

std::string kernel_image_problem() {
  cudaFuncAttributes attributes{};
  const cudaError_t err = cudaFuncGetAttributes(&attributes, probe_kernel);
  if (err == cudaSuccess) return "";
  cudaGetLastError();  // clear it: the caller reports it
  return cudaGetErrorString(err);
}

}  // namespace tr::cuda
