#include "layers/device.h"

#include "layers/cpu/bf16.h"
#include "layers/precision.h"

#ifdef TR_HAVE_CUDA
#include "layers/cuda/kernels.h"
#include "layers/cuda/runtime.h"
#endif

namespace tr {

bool cuda_built() {
#ifdef TR_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

int cuda_device_count() {
#ifdef TR_HAVE_CUDA
  return cuda::device_count();
#else
  return 0;
#endif
}

std::string cuda_unavailable_reason() {
#ifdef TR_HAVE_CUDA
  return cuda::unavailable_reason();
#else
  return "this trainer was built without the CUDA backend";
#endif
}

void select_cuda_device(int index) {
#ifdef TR_HAVE_CUDA
  cuda::set_device(index);
#else
  (void)index;
  throw InternalError("select_cuda_device in a build without the CUDA backend");
#endif
}

int current_cuda_device() {
#ifdef TR_HAVE_CUDA
  return cuda::current_device();
#else
  return 0;
#endif
}

void set_cuda_matmul_precision(MatmulPrecision precision) {
#ifdef TR_HAVE_CUDA
  cuda::set_bf16_matmuls(precision == MatmulPrecision::bf16);
#else
  if (precision == MatmulPrecision::bf16)
    throw InternalError("bf16 matrix products in a build without the CUDA backend");
#endif
}

void set_training_precision(MatmulPrecision precision, Device device) {
  const bool bf16 = precision == MatmulPrecision::bf16;
  cpu::set_bf16_products(bf16 && device == Device::cpu);
  set_bf16_activations(bf16);
  set_cuda_matmul_precision(bf16 && device == Device::cuda ? MatmulPrecision::bf16
                                                           : MatmulPrecision::fp32);
}

std::size_t peak_memory_bytes(Device device) {
  std::size_t bytes = BufferPool::instance(device).peak_in_use_bytes();
#ifdef TR_HAVE_CUDA
  if (device == Device::cuda) bytes += cuda::scratch_peak_bytes();
#endif
  return bytes;
}

void reset_peak_memory(Device device) {
  BufferPool::instance(device).reset_peak();
#ifdef TR_HAVE_CUDA
  if (device == Device::cuda) cuda::reset_scratch_peak();
#endif
}

void synchronize_device(Device device) {
  if (device == Device::cpu) return;
#ifdef TR_HAVE_CUDA
  cuda::synchronize();
#else
  throw InternalError("synchronize_device(cuda) in a build without the CUDA backend");
#endif
}

std::string cuda_architectures() {
#if defined(TR_HAVE_CUDA) && defined(TR_CUDA_ARCHITECTURES)
  return TR_CUDA_ARCHITECTURES;
#else
  return "";
#endif
}

CudaDeviceInfo cuda_device_info(int index) {
#ifdef TR_HAVE_CUDA
  const cuda::DeviceInfo d = cuda::device_info(index);
  return {d.name, d.capability, d.memory, d.uuid, d.pci_bus_id};
#else
  (void)index;
  throw InternalError("cuda_device_info in a build without the CUDA backend");
#endif
}

std::int64_t widest_flash_attention_head(bool bf16) {
#ifdef TR_HAVE_CUDA
  for (std::int64_t Dh = cuda::kFlashMaxHeadDim; Dh >= 16; Dh /= 2)
    if (cuda::flash_attention_supported(bf16, Dh)) return Dh;
#else
  (void)bf16;
#endif
  return 0;
}

std::string cudnn_status() {
#ifdef TR_HAVE_CUDA
  return cuda::cudnn_attention_status();
#else
  return "";
#endif
}

std::string own_bf16_attention_kernels() {
#ifdef TR_HAVE_CUDA
  return cuda::flash_mma_kernels()
             ? "mma.sync, scores in registers (the default; TR_FLASH_KERNELS=wmma: WMMA, scores "
               "in shared memory)"
             : "WMMA, scores in shared memory (TR_FLASH_KERNELS=wmma; the default without it: "
               "mma.sync, scores in registers)";
#else
  return "";
#endif
}

std::string current_cuda_device_name() {
#ifdef TR_HAVE_CUDA
  return cuda::device_name();
#else
  return "";
#endif
}

std::string cuda_device_problem(MatmulPrecision precision) {
#ifdef TR_HAVE_CUDA
  const int capability = cuda::compute_capability();
  const std::string cc = std::to_string(capability / 10) + "." + std::to_string(capability % 10);
  const std::string image = cuda::kernel_image_problem();
  if (!image.empty())
    return "compute capability " + cc + " is not among this build's CUDA architectures (" + image +
           "; rebuild with -DCMAKE_CUDA_ARCHITECTURES=" + std::to_string(capability) + ")";
  if (precision == MatmulPrecision::bf16 && capability < 80)
    return "train.precision: bf16 needs bf16 tensor cores (compute capability 8.0 or later), "
           "this GPU has " +
           cc;
  return "";
#else
  (void)precision;
  return "this trainer was built without the CUDA backend";
#endif
}

Tensor to_device(const Tensor& t, Device device) {
  if (t.device() == device) return t;
  Tensor out = Tensor::empty(t.shape(), t.dtype(), device);
  out.copy_from(t);
  return out;
}

}  // namespace tr
