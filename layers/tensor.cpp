#include "layers/tensor.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

#include "layers/cpu/bf16.h"

#ifdef TR_HAVE_CUDA
#include "layers/cuda/kernels.h"
#include "layers/cuda/runtime.h"
#endif

namespace tr {

namespace {
std::mutex& pool_mutex() {
  static std::mutex m;
  return m;
}
constexpr std::size_t kAlignment = 64;  // a cache line, and enough for AVX-512 loads
// Cached free memory above which a cache miss first frees the stale blocks (see acquire).
constexpr std::size_t kStaleCacheBytes = std::size_t{256} << 20;
// A cached block is stale when this many requests went by since its release without taking
// it: several micro-batches' worth (a 12-layer step makes a few hundred), so the blocks of the
// activations the next forward takes again are never stale.
constexpr std::uint64_t kStaleRequests = 4096;

// Under AddressSanitizer (a -fsanitize=address build) the host pool's blocks would each look
// like one allocation, in use for the life of the process: the bytes past a tensor's size and
// the blocks waiting in the pool are marked unaddressable, so that a read past a tensor's end
// or through a tensor already given back is reported as it would be with malloc and free.
#if defined(__SANITIZE_ADDRESS__)
void set_addressable(Device device, void* data, std::size_t used, std::size_t bytes) {
  if (device != Device::cpu) return;
  ASAN_UNPOISON_MEMORY_REGION(data, used);
  ASAN_POISON_MEMORY_REGION(static_cast<char*>(data) + used, bytes - used);
}
void grow_addressable(Device device, void* data, std::size_t used) {
  if (device == Device::cpu) ASAN_UNPOISON_MEMORY_REGION(data, used);
}
#else
void set_addressable(Device, void*, std::size_t, std::size_t) {}
void grow_addressable(Device, void*, std::size_t) {}
#endif

// The system allocation behind a pool miss, and its release. The CUDA pool caches device
// blocks the same way as the host pool: cudaMalloc and cudaFree synchronise the device, so a
// warm step must not call them.
void* system_alloc(Device device, std::size_t bytes) {
#ifdef TR_HAVE_CUDA
  if (device == Device::cuda) return cuda::malloc_device(bytes);
#endif
  (void)device;
  void* p = std::aligned_alloc(kAlignment, bytes);
  if (!p) throw std::bad_alloc();
  return p;
}

void system_free(Device device, void* p, std::size_t bytes) {
#ifdef TR_HAVE_CUDA
  if (device == Device::cuda) return cuda::free_device(p);
#endif
  set_addressable(device, p, bytes, bytes);  // the allocator's own again
  std::free(p);
}

// Device-aware byte copy (host <-> device through the CUDA runtime).
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device,
                std::size_t bytes) {
  if (bytes == 0) return;
  if (dst_device == Device::cpu && src_device == Device::cpu) {
    std::memcpy(dst, src, bytes);
    return;
  }
#ifdef TR_HAVE_CUDA
  // Uploads do not wait for the GPU (a pinned staging copy); downloads do, as their reader
  // needs the bytes.
  if (src_device == Device::cpu)
    cuda::copy_to_device_staged(dst, src, bytes);
  else
    cuda::copy(dst, src, bytes);
#else
  throw InternalError("a CUDA tensor in a build without the CUDA backend");
#endif
}
}  // namespace

std::size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::bf16: return 2;
    case DType::i32: return 4;
    case DType::i64: return 8;
    case DType::u8: return 1;
  }
  return 0;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::bf16: return "bf16";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
    case DType::u8: return "u8";
  }
  return "?";
}

const char* device_name(Device device) {
  return device == Device::cpu ? "cpu" : "cuda";
}

std::int64_t shape_numel(const Shape& shape) {
  std::int64_t n = 1;
  for (auto s : shape) n *= s;
  return n;
}

std::string shape_string(const Shape& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

Buffer::~Buffer() {
  if (data) BufferPool::instance(device).release(data, bytes, requested);
}

BufferPool& BufferPool::instance(Device device) {
  // Leaked on purpose: tensors held by static objects may be destroyed after the pool.
  static BufferPool* cpu_pool = new BufferPool(Device::cpu);
  if (device == Device::cpu) return *cpu_pool;
#ifdef TR_HAVE_CUDA
  // One pool for the current device (single-GPU processes; one process per GPU).
  static BufferPool* cuda_pool = new BufferPool(Device::cuda);
  return *cuda_pool;
#else
  throw InternalError("a CUDA tensor in a build without the CUDA backend");
#endif
}

namespace {
// Size classes: requests round up to 64 bytes, and above 4 KiB to a sixteenth of an octave
// (m * 2^k, m in 16..31), wasting under 6.25%. Blocks are reused by class, so batches whose
// shapes vary from step to step (token batching, ragged sentences) recycle a logarithmic number
// of classes instead of the cache collecting one block per distinct size without bound; a
// request also takes a cached block up to half as large again (acquire), so the finer classes
// cost no extra misses. Quarter octaves (up to 25%) held 9% more than the tensors asked for at
// ViT-B/16's peak (bench/train_step --flash; parameters, gradients and AdamW's state included).
std::size_t size_class(std::size_t bytes) {
  std::size_t rounded =
      std::max<std::size_t>(kAlignment, (bytes + kAlignment - 1) / kAlignment * kAlignment);
  if (rounded <= 4096) return rounded;
  int k = 63 - __builtin_clzll(rounded);  // 2^k <= rounded < 2^(k+1)
  const std::size_t step = std::size_t{1} << (k - 4);
  return (rounded + step - 1) / step * step;
}
}  // namespace

std::shared_ptr<Buffer> BufferPool::acquire(std::size_t bytes) {
  const std::size_t rounded = size_class(bytes);
  auto buffer = std::make_shared<Buffer>();
  buffer->bytes = rounded;
  buffer->requested = bytes;
  buffer->device = device_;
  {
    std::lock_guard<std::mutex> lock(pool_mutex());
    ++requests_;
    requested_in_use_bytes_ += bytes;
    peak_requested_bytes_ = std::max(peak_requested_bytes_, requested_in_use_bytes_);
    // The smallest cached block of the size class or up to half as large again: ragged
    // batches (a few tokens more or less from step to step) take the blocks the previous
    // step gave back instead of missing on the neighbouring class.
    std::size_t best = free_blocks_.size();
    for (std::size_t i = 0; i < free_blocks_.size(); ++i) {
      const std::size_t b = free_blocks_[i].bytes;
      if (b >= rounded && b <= rounded + rounded / 2 &&
          (best == free_blocks_.size() || b < free_blocks_[best].bytes))
        best = i;
    }
    if (best < free_blocks_.size()) {
      buffer->data = free_blocks_[best].data;
      buffer->bytes = free_blocks_[best].bytes;
      free_blocks_[best] = free_blocks_.back();
      free_blocks_.pop_back();
      set_addressable(device_, buffer->data, bytes, buffer->bytes);
      cached_bytes_ -= buffer->bytes;
      in_use_bytes_ += buffer->bytes;
      peak_in_use_bytes_ = std::max(peak_in_use_bytes_, in_use_bytes_);
      return buffer;
    }
    in_use_bytes_ += rounded;
    peak_in_use_bytes_ = std::max(peak_in_use_bytes_, in_use_bytes_);
    // A miss while much is cached: blocks nobody took for a long while are of sizes nobody
    // asks for any more (a tensor grew past them as longer batches came): give them back
    // before taking more. Recently released ones (the next forward's) stay.
    if (cached_bytes_ > kStaleCacheBytes) {
      std::erase_if(free_blocks_, [&](const FreeBlock& block) {
        if (requests_ - block.released_at <= kStaleRequests) return false;
        system_free(device_, block.data, block.bytes);
        cached_bytes_ -= block.bytes;
        return true;
      });
    }
    ++system_allocations_;
  }
  try {
    try {
      buffer->data = system_alloc(device_, rounded);
    } catch (const std::bad_alloc&) {
      // Out of (device) memory: cached blocks of other sizes may make room.
      trim();
      try {
        buffer->data = system_alloc(device_, rounded);
      } catch (const std::bad_alloc&) {
        std::lock_guard<std::mutex> lock(pool_mutex());
        throw OutOfMemory(out_of_memory_message(
            device_ == Device::cuda ? "GPU memory" : "host memory", static_cast<double>(rounded),
            static_cast<double>(in_use_bytes_ - rounded), static_cast<double>(peak_in_use_bytes_)));
      }
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(pool_mutex());
    in_use_bytes_ -= rounded;
    requested_in_use_bytes_ -= bytes;
    throw;
  }
  set_addressable(device_, buffer->data, bytes, rounded);
  return buffer;
}

void BufferPool::release(void* data, std::size_t bytes, std::size_t requested) {
  std::lock_guard<std::mutex> lock(pool_mutex());
  requested_in_use_bytes_ -= requested;
  set_addressable(device_, data, 0, bytes);
  free_blocks_.push_back({bytes, data, requests_});
  cached_bytes_ += bytes;
  in_use_bytes_ -= bytes;
}

namespace {
// A pool counter's value, read under the pool's lock.
template <typename T>
T read_locked(const T& counter) {
  std::lock_guard<std::mutex> lock(pool_mutex());
  return counter;
}
}  // namespace

std::int64_t BufferPool::system_allocations() const {
  return read_locked(system_allocations_);
}
std::size_t BufferPool::cached_bytes() const {
  return read_locked(cached_bytes_);
}
std::size_t BufferPool::in_use_bytes() const {
  return read_locked(in_use_bytes_);
}
std::size_t BufferPool::peak_in_use_bytes() const {
  return read_locked(peak_in_use_bytes_);
}
std::size_t BufferPool::peak_requested_bytes() const {
  return read_locked(peak_requested_bytes_);
}
void BufferPool::reset_peak() {
  std::lock_guard<std::mutex> lock(pool_mutex());
  peak_in_use_bytes_ = in_use_bytes_;
  peak_requested_bytes_ = requested_in_use_bytes_;
}

void BufferPool::trim() {
  std::lock_guard<std::mutex> lock(pool_mutex());
  for (const FreeBlock& block : free_blocks_) system_free(device_, block.data, block.bytes);
  free_blocks_.clear();
  cached_bytes_ = 0;
}

BufferPool::~BufferPool() {
  trim();
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (auto s : shape) TR_CHECK(s >= 0, "negative dimension in " + shape_string(shape));
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.device_ = device;
  t.buffer_ = BufferPool::instance(device).acquire(t.bytes());
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.zero_();
  return t;
}

std::int64_t Tensor::dim(int axis) const {
  int n = ndim();
  if (axis < 0) axis += n;
  TR_CHECK(axis >= 0 && axis < n, "axis out of range for shape " + shape_string(shape_));
  return shape_[static_cast<std::size_t>(axis)];
}

Tensor Tensor::view(const Shape& shape) const {
  TR_CHECK(shape_numel(shape) == numel(),
           "cannot view " + shape_string(shape_) + " as " + shape_string(shape));
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape_, dtype_, device_);
  copy_bytes(t.raw(), device_, raw(), device_, bytes());
  return t;
}

void Tensor::zero_() {
  if (numel() == 0) return;
#ifdef TR_HAVE_CUDA
  if (device_ == Device::cuda) return cuda::memset_zero(raw(), bytes());
#endif
  TR_CHECK(device_ == Device::cpu, "a CUDA tensor in a build without the CUDA backend");
  std::memset(raw(), 0, bytes());
}

void Tensor::copy_from(const Tensor& source) {
  TR_CHECK(source.numel() == numel(),
           "copy_from: " + shape_string(source.shape()) + " into " + shape_string(shape_));
  if (source.dtype() == dtype_) {
    copy_bytes(raw(), device_, source.raw(), source.device(), bytes());
    return;
  }
  const std::int64_t n = numel();
#ifdef TR_HAVE_CUDA
  // f32 <-> bf16 on one GPU (bf16 activations, layers/precision.h): the conversion kernels.
  if (device_ == Device::cuda && source.device() == Device::cuda) {
    if (source.dtype() == DType::f32 && dtype_ == DType::bf16)
      return cuda::f32_to_bf16(static_cast<cuda::bf16*>(raw()), source.data<float>(), n);
    if (source.dtype() == DType::bf16 && dtype_ == DType::f32)
      return cuda::bf16_to_f32(data<float>(), static_cast<const cuda::bf16*>(source.raw()), n);
  }
#endif
  TR_CHECK(device_ == Device::cpu && source.device() == Device::cpu,
           "copy_from: dtype conversions are host-only (f32 <-> bf16 also on one GPU)");
  if (source.dtype() == DType::f32 && dtype_ == DType::f64) {
    const float* s = source.data<float>();
    double* d = data<double>();
    for (std::int64_t i = 0; i < n; ++i) d[i] = s[i];
  } else if (source.dtype() == DType::f64 && dtype_ == DType::f32) {
    const double* s = source.data<double>();
    float* d = data<float>();
    for (std::int64_t i = 0; i < n; ++i) d[i] = static_cast<float>(s[i]);
  } else if (source.dtype() == DType::f32 && dtype_ == DType::bf16) {
    cpu::f32_to_bf16(static_cast<std::uint16_t*>(raw()), source.data<float>(), n);
  } else if (source.dtype() == DType::bf16 && dtype_ == DType::f32) {
    cpu::bf16_to_f32(data<float>(), static_cast<const std::uint16_t*>(source.raw()), n);
  } else {
    throw InternalError(std::string("copy_from: no conversion ") + dtype_name(source.dtype()) +
                        " -> " + dtype_name(dtype_));
  }
}

void ensure_shape(Tensor& t, const Shape& shape, DType dtype, Device device) {
  if (t.defined() && t.dtype() == dtype && t.device() == device) {
    if (t.numel() == shape_numel(shape)) {
      t = t.view(shape);
      return;
    }
    for (auto s : shape) TR_CHECK(s >= 0, "negative dimension in " + shape_string(shape));
    const std::size_t bytes = static_cast<std::size_t>(shape_numel(shape)) * dtype_size(dtype);
    if (bytes <= t.capacity()) {
      // Same buffer, fewer elements. Other handles of the buffer may still use the larger
      // size, so AddressSanitizer's addressable part only grows here.
      if (bytes > t.bytes()) grow_addressable(device, t.raw(), bytes);
      t.shape_ = shape;
      return;
    }
  }
  t = Tensor::empty(shape, dtype, device);
}

}  // namespace tr
