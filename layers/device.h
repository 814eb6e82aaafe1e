// Which devices this process can use, and moving tensors between them. Compiled into every
// build: without the CUDA backend (TRAINER_CUDA=OFF or no nvcc) the answers are "none", so the
// trainer asks here instead of testing macros.
#pragma once

#include <string>

#include "layers/tensor.h"

namespace tr {

// This binary contains the CUDA backend (layers/cuda).
bool cuda_built();
// GPUs usable now: 0 without the backend, without a driver or without a GPU. Never throws.
int cuda_device_count();
// Why cuda_device_count() is 0, in a few words ("" when it is not).
std::string cuda_unavailable_reason();

// Makes GPU `index` current for this thread (the trainer's rank's GPU); InternalError without
// the backend. current_cuda_device(): the current one.
void select_cuda_device(int index);
int current_cuda_device();
// The current GPU's name ("" without the backend).
std::string current_cuda_device_name();

// The CUDA architectures this build carries kernels for ("80,90"; "" without the backend).
std::string cuda_architectures();
// GPU `index`: name, compute capability (major * 10 + minor), memory, UUID ("GPU-" and 32
// hex digits, as nvidia-smi names it) and PCI address ("domain:bus:device", hex).
// InternalError without the backend.
struct CudaDeviceInfo {
  std::string name;
  int compute_capability = 0;
  std::size_t memory_bytes = 0;
  std::string uuid;
  std::string pci_bus_id;
};
CudaDeviceInfo cuda_device_info(int index);
// The widest attention heads (16, 32, 64 or 128 columns) the current GPU runs on the flash
// kernels in a precision (bf16: bf16 projections), as ops::use_flash_attention decides: wider
// ones take the materialised kernels. 0: none (or no CUDA backend).
std::int64_t widest_flash_attention_head(bool bf16);

// cuDNN, which the bf16 attention runs through where it takes the shape (layers/cuda/kernels.h,
// cudnn_attention_*): its version ("9.19.0") or why it is not used. "" without the backend.
std::string cudnn_status();

// The own bf16 flash kernels that run where cuDNN does not: "mma.sync (...)" (the default) or
// "WMMA (...)", with how to choose the other (TR_FLASH_KERNELS). "" without the backend.
std::string own_bf16_attention_kernels();

// Operand precision of the matrix products on CUDA (linear layers, attention): fp32, or bf16
// operands with fp32 accumulation and fp32 results, the rest of the step staying fp32
// (train.precision: bf16). Process-wide: a process trains one configuration. bf16 without the
// CUDA backend is an InternalError; the CPU products are unaffected.
enum class MatmulPrecision { fp32, bf16 };
void set_cuda_matmul_precision(MatmulPrecision precision);

// train.precision for training on `device`: with bf16 the device's matrix products take bf16
// operands (fp32 accumulation), and the transformer blocks' activations are bf16
// (layers/precision.h). fp32 turns all of it off. Process-wide.
void set_training_precision(MatmulPrecision precision, Device device);

// "" when the current GPU can train at `precision` with this build; else why not, in a few
// words: no kernel image for its architecture (the build's CMAKE_CUDA_ARCHITECTURES), or bf16
// on a GPU without bf16 tensor cores (compute capability below 8.0).
std::string cuda_device_problem(MatmulPrecision precision);

// The most memory this process's tensors on `device` have held at once (the buffer pool's
// peak) plus, on CUDA, the most the ops' stream-ordered scratch has held (attention and
// conversion temporaries, column-sum partials): an upper bound on the peak of the two together,
// comparable with torch.cuda.max_memory_allocated, which counts both kinds. Bytes.
// reset_peak_memory: the buffer pool's count back to what it holds now, the scratch's to zero
// (it holds nothing between ops).
std::size_t peak_memory_bytes(Device device);
void reset_peak_memory(Device device);

// Waits until the work queued on `device` is done (nothing to wait for on the CPU).
void synchronize_device(Device device);

// A copy of `t` on `device` (same shape and dtype); `t` itself when it is already there.
// Host <-> device copies are synchronous.
Tensor to_device(const Tensor& t, Device device);

}  // namespace tr
