// Host-side CUDA runtime glue: device discovery, a device guard, raw memory and copies.
// Plain C++ (no CUDA headers), so any translation unit of the CUDA build may include it.
// Everything runs on one stream per process for now (the legacy default stream); the stream
// parameter arrives with the overlapped communication of the NCCL work.
#pragma once

#include <cstddef>
#include <string>

namespace tr::cuda {

// Number of GPUs; 0 when the driver is missing or too old, or no GPU is present (never throws).
int device_count() noexcept;
// Why device_count() is 0: the CUDA runtime's message ("" when a GPU is present).
std::string unavailable_reason();

int current_device();
std::string device_name();  // the current device's, e.g. "NVIDIA H100 80GB HBM3"
// The current device's compute capability as major * 10 + minor (90 for an H100).
int compute_capability();
// The most dynamic shared memory one block of the current device may opt into (H100 227 KiB,
// A100 163 KiB, RTX 30 and 40 series 99 KiB).
std::size_t max_shared_memory_per_block();
// A device's name, compute capability (major * 10 + minor), memory in bytes, UUID (as
// nvidia-smi writes it: "GPU-" and 32 hex digits in groups of 8-4-4-4-12) and PCI address
// ("domain:bus:device" in hex, the key NCCL tells GPUs apart by).
struct DeviceInfo {
  std::string name;
  int capability = 0;
  std::size_t memory = 0;
  std::string uuid;
  std::string pci_bus_id;
};
DeviceInfo device_info(int device);
// "" when the current device can run this build's kernels, else the runtime's reason (no
// kernel image for its architecture). probe.cu.
std::string kernel_image_problem();
void set_device(int device);
// Makes `device` current for its scope and restores the previous one after.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_;
};

// The most memory the ops' stream-ordered scratch (StreamScratch in launch.cuh: the current
// device's default memory pool) has held at once since start or reset_scratch_peak().
std::size_t scratch_peak_bytes();
void reset_scratch_peak();

// Raw device memory (the caching BufferPool of layers/tensor.cpp sits on top). malloc_device
// throws std::bad_alloc when the device is out of memory.
void* malloc_device(std::size_t bytes);
void free_device(void* ptr) noexcept;
// Any direction (unified addressing); waits until the copy is complete.
void copy(void* dst, const void* src, std::size_t bytes);
// Any direction, ordered on the compute stream after the kernels launched before it; returns
// without waiting (for device-to-device copies inside a step).
void copy_async(void* dst, const void* src, std::size_t bytes);
// Host to device, returning at once: `src` is copied into a pinned staging buffer (the caller
// may reuse its memory on return) and the transfer is queued on the compute stream, so an
// upload inside a step does not wait for the GPU. Copies of more than kStagedCopyMaxBytes (model
// and optimizer-state moves, not steps) go through copy().
constexpr std::size_t kStagedCopyMaxBytes = std::size_t{128} << 20;
void copy_to_device_staged(void* dst, const void* src, std::size_t bytes);
// True when `ptr` is device (or managed) memory of the CUDA runtime; false for host memory.
bool is_device_pointer(const void* ptr);
// `rows` rows of `row_bytes` from src (rows `src_pitch` bytes apart) to dst (`dst_pitch`
// apart), ordered on the compute stream, returning without waiting.
void copy_rows_async(void* dst, std::size_t dst_pitch, const void* src, std::size_t src_pitch,
                     std::size_t row_bytes, std::size_t rows);
// Zero bytes on the device, ordered on the compute stream.
void memset_zero(void* ptr, std::size_t bytes);
// Waits for all work of this process on the current device; throws on a kernel fault.
void synchronize();

}  // namespace tr::cuda
