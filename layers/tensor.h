// Tensor: a shape, an element type, a device and a reference-counted buffer.
//
// Tensors are always contiguous and row-major. A view (reshape) shares the buffer. Buffers
// come from a per-device BufferPool that keeps released blocks for reuse, so that after the
// first training step (warm-up) a step allocates nothing from the system.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "layers/error.h"

namespace tr {

enum class DType { f32, f64, bf16, i32, i64, u8 };
enum class Device { cpu, cuda };

std::size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);
const char* device_name(Device device);

template <typename T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::f32;
}
template <>
constexpr DType dtype_of<double>() {
  return DType::f64;
}
template <>
constexpr DType dtype_of<std::int32_t>() {
  return DType::i32;
}
template <>
constexpr DType dtype_of<std::int64_t>() {
  return DType::i64;
}
template <>
constexpr DType dtype_of<std::uint8_t>() {
  return DType::u8;
}
// A bf16 element as stored (the upper half of an fp32; layers/cpu/bf16.h converts).
struct BFloat16 {
  std::uint16_t bits;
};
template <>
constexpr DType dtype_of<BFloat16>() {
  return DType::bf16;
}

using Shape = std::vector<std::int64_t>;
std::int64_t shape_numel(const Shape& shape);
std::string shape_string(const Shape& shape);

// A block of device memory, handed back to its pool when the last tensor using it goes away.
struct Buffer {
  void* data = nullptr;
  std::size_t bytes = 0;      // the block's size (its size class, or a larger cached block)
  std::size_t requested = 0;  // what the tensor asked for
  Device device = Device::cpu;
  ~Buffer();
};

// Caches released blocks by size class (layers/tensor.cpp). A request takes the smallest cached
// block of its class or up to half as large again; a miss while more than 256 MiB is cached
// first frees the blocks no request took for a long while. Training reuses the same shapes
// every step (and layers give their buffers back as backward leaves them), so a warm step
// makes no system allocation.
class BufferPool {
 public:
  static BufferPool& instance(Device device);
  std::shared_ptr<Buffer> acquire(std::size_t bytes);
  void release(void* data, std::size_t bytes, std::size_t requested);
  // The counters below are read under the pool's lock: the data loader's prefetch thread
  // allocates batches while the training thread reads them for its metrics.
  // Number of allocations that went to the system since start; a warm step leaves it unchanged.
  std::int64_t system_allocations() const;
  std::size_t cached_bytes() const;
  // Bytes held by live tensors (their blocks: size classes, so a little above their sizes),
  // and the most ever held at once since start: the training metrics' peak memory.
  std::size_t in_use_bytes() const;
  std::size_t peak_in_use_bytes() const;
  // The same for the bytes the live tensors asked for (the blocks' sizes less the rounding to
  // size classes and the larger cached blocks taken): what the blocks' sizes cost is the
  // difference.
  std::size_t peak_requested_bytes() const;
  void reset_peak();
  void trim();  // frees every cached block
  ~BufferPool();

 private:
  explicit BufferPool(Device device) : device_(device) {}
  Device device_;
  struct FreeBlock {
    std::size_t bytes;
    void* data;
    std::uint64_t released_at;  // requests_ when it was released
  };
  std::vector<FreeBlock> free_blocks_;
  std::uint64_t requests_ = 0;
  std::int64_t system_allocations_ = 0;
  std::size_t cached_bytes_ = 0;
  std::size_t in_use_bytes_ = 0;
  std::size_t peak_in_use_bytes_ = 0;
  std::size_t requested_in_use_bytes_ = 0;
  std::size_t peak_requested_bytes_ = 0;
};

class Tensor {
 public:
  Tensor() = default;
  // Uninitialised memory.
  static Tensor empty(const Shape& shape, DType dtype, Device device = Device::cpu);
  static Tensor zeros(const Shape& shape, DType dtype, Device device = Device::cpu);

  bool defined() const { return buffer_ != nullptr; }
  const Shape& shape() const { return shape_; }
  std::int64_t dim(int axis) const;  // negative axes count from the end
  int ndim() const { return static_cast<int>(shape_.size()); }
  std::int64_t numel() const { return shape_numel(shape_); }
  std::size_t bytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }

  void* raw() const { return buffer_ ? buffer_->data : nullptr; }
  template <typename T>
  T* data() const {
    TR_CHECK(dtype_of<T>() == dtype_, std::string("tensor holds ") + dtype_name(dtype_) +
                                          ", accessed as " + dtype_name(dtype_of<T>()));
    return static_cast<T*>(raw());
  }

  // Same buffer, another shape with the same element count.
  Tensor view(const Shape& shape) const;
  // Bytes of the buffer (at least bytes(); more after ensure_shape shrank the tensor).
  std::size_t capacity() const { return buffer_ ? buffer_->bytes : 0; }
  // A new tensor holding a copy of the data (same device and dtype).
  Tensor clone() const;
  void zero_();
  // Copies values from `source` (same element count). Across devices (host <-> CUDA,
  // synchronous) the dtypes must match; on the host f32 converts to and from f64 and bf16
  // (f32 -> bf16 rounds to nearest even), on a GPU to and from bf16.
  void copy_from(const Tensor& source);
  bool same_buffer(const Tensor& other) const { return buffer_ == other.buffer_; }

 private:
  friend void ensure_shape(Tensor& t, const Shape& shape, DType dtype, Device device);
  std::shared_ptr<Buffer> buffer_;
  Shape shape_;
  DType dtype_ = DType::f32;
  Device device_ = Device::cpu;
};

// Makes `t` a tensor of the given shape, reusing its buffer when it is large enough (the
// contents are then unspecified). Modules keep their activations in members and call this
// each step: no allocation once warm, also when batch shapes vary (the buffer keeps the
// largest size seen instead of the pool collecting one block per size).
void ensure_shape(Tensor& t, const Shape& shape, DType dtype, Device device = Device::cpu);

}  // namespace tr
