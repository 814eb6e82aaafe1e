#include "layers/cuda/runtime.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <new>
#include <vector>

#include "layers/cuda/check.h"

namespace tr::cuda {

namespace {
// The first query's answer, kept: cudaGetDeviceCount initialises the runtime once, and its
// failure (no driver) must not be retried, and re-reported, on every call.
struct Discovery {
  int count = 0;
  std::string reason;
};
const Discovery& discovery() {
  static const Discovery d = [] {
    Discovery r;
    const cudaError_t err = cudaGetDeviceCount(&r.count);
    if (err != cudaSuccess) {
      r.count = 0;
      r.reason = cudaGetErrorString(err);
      cudaGetLastError();  // clear it, so that later calls do not report it again
    } else if (r.count == 0) {
      r.reason = "no CUDA device present";
    }
    return r;
  }();
  return d;
}
}  // namespace

int device_count() noexcept {
  try {
    return discovery().count;
  } catch (...) {
    return 0;
  }
}

std::string unavailable_reason() {
  return discovery().reason;
}

int current_device() {
  int d = 0;
  TR_CUDA_CHECK(cudaGetDevice(&d));
  return d;
}

std::string device_name() {
  cudaDeviceProp prop{};
  TR_CUDA_CHECK(cudaGetDeviceProperties(&prop, current_device()));
  return prop.name;
}

int compute_capability() {
  const int device = current_device();
  int major = 0, minor = 0;
  TR_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  TR_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  return major * 10 + minor;
}

std::size_t max_shared_memory_per_block() {
  int bytes = 0;
  TR_CUDA_CHECK(
      cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, current_device()));
  return static_cast<std::size_t>(bytes);
}

std::size_t scratch_peak_bytes() {
  cudaMemPool_t pool;
  TR_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, current_device()));
  std::uint64_t high = 0;
  TR_CUDA_CHECK(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &high));
  return static_cast<std::size_t>(high);
}

void reset_scratch_peak() {
  cudaMemPool_t pool;
  TR_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, current_device()));
  std::uint64_t zero = 0;  // the only value the attribute accepts; it rises with the next use
  TR_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &zero));
}

DeviceInfo device_info(int device) {
  cudaDeviceProp prop{};
  TR_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  std::string uuid = "GPU-";
  for (int i = 0; i < 16; ++i) {
    static const char kHex[] = "0123456789abcdef";
    const auto byte = static_cast<unsigned char>(prop.uuid.bytes[i]);
    if (i == 4 || i == 6 || i == 8 || i == 10) uuid += '-';
    uuid += kHex[byte >> 4];
    uuid += kHex[byte & 15];
  }
  char pci[32];
  std::snprintf(pci, sizeof pci, "%04x:%02x:%02x", static_cast<unsigned>(prop.pciDomainID),
                static_cast<unsigned>(prop.pciBusID), static_cast<unsigned>(prop.pciDeviceID));
  return {prop.name, prop.major * 10 + prop.minor, prop.totalGlobalMem, uuid, pci};
}

void set_device(int device) {
  TR_CUDA_CHECK(cudaSetDevice(device));
}

DeviceGuard::DeviceGuard(int device) : previous_(current_device()) {
  if (device != previous_) TR_CUDA_CHECK(cudaSetDevice(device));
}

DeviceGuard::~DeviceGuard() {
  cudaSetDevice(previous_);
}

void* malloc_device(std::size_t bytes) {
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    throw std::bad_alloc();
  }
  TR_CUDA_CHECK(err);
  return p;
}

void free_device(void* ptr) noexcept {
  cudaFree(ptr);
}

void copy(void* dst, const void* src, std::size_t bytes) {
  if (bytes == 0) return;
  TR_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault));
}

void copy_async(void* dst, const void* src, std::size_t bytes) {
  if (bytes == 0) return;
  TR_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, 0));
}

namespace {
// Pinned buffers of the staged copies, each free again once the event recorded after its
// transfer has completed. At most kSlots: when all are in flight (a burst of small copies) the
// oldest is waited for, so pinned memory stays bounded.
struct StagingSlot {
  void* host = nullptr;
  std::size_t capacity = 0;
  cudaEvent_t done = nullptr;
  unsigned long long used = 0;  // order of last use
};
constexpr std::size_t kSlots = 8;
std::mutex g_staging_mutex;
std::vector<StagingSlot>& staging_slots() {
  static auto* slots = new std::vector<StagingSlot>;  // leaked, as the driver may be gone at exit
  return *slots;
}
unsigned long long g_staging_clock = 0;
}  // namespace

void copy_to_device_staged(void* dst, const void* src, std::size_t bytes) {
  if (bytes == 0) return;
  if (bytes > kStagedCopyMaxBytes) return copy(dst, src, bytes);
  std::lock_guard<std::mutex> lock(g_staging_mutex);
  std::vector<StagingSlot>& slots = staging_slots();
  StagingSlot* slot = nullptr;
  for (StagingSlot& s : slots) {
    const cudaError_t state = cudaEventQuery(s.done);
    if (state == cudaErrorNotReady) continue;
    TR_CUDA_CHECK(state);
    if (s.capacity >= bytes) {
      slot = &s;
      break;
    }
  }
  if (slot == nullptr && slots.size() < kSlots) {
    slots.push_back(StagingSlot{});
    slot = &slots.back();
    TR_CUDA_CHECK(cudaEventCreateWithFlags(&slot->done, cudaEventDisableTiming));
  }
  if (slot == nullptr) {  // all in flight or too small: the least recently used, once it is free
    slot = &*std::min_element(
        slots.begin(), slots.end(),
        [](const StagingSlot& a, const StagingSlot& b) { return a.used < b.used; });
    TR_CUDA_CHECK(cudaEventSynchronize(slot->done));
  }
  if (slot->capacity < bytes) {
    if (slot->host) TR_CUDA_CHECK(cudaFreeHost(slot->host));
    slot->host = nullptr;
    slot->capacity = std::max<std::size_t>(bytes, std::size_t{1} << 20);
    TR_CUDA_CHECK(cudaMallocHost(&slot->host, slot->capacity));
  }
  std::memcpy(slot->host, src, bytes);
  TR_CUDA_CHECK(cudaMemcpyAsync(dst, slot->host, bytes, cudaMemcpyHostToDevice, 0));
  TR_CUDA_CHECK(cudaEventRecord(slot->done, 0));
  slot->used = ++g_staging_clock;
}

bool is_device_pointer(const void* ptr) {
  if (ptr == nullptr || device_count() == 0) return false;
  cudaPointerAttributes a{};
  if (cudaPointerGetAttributes(&a, ptr) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

void copy_rows_async(void* dst, std::size_t dst_pitch, const void* src, std::size_t src_pitch,
                     std::size_t row_bytes, std::size_t rows) {
  if (row_bytes == 0 || rows == 0) return;
  TR_CUDA_CHECK(
      cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, row_bytes, rows, cudaMemcpyDefault, 0));
}

void memset_zero(void* ptr, std::size_t bytes) {
  if (bytes == 0) return;
  TR_CUDA_CHECK(cudaMemsetAsync(ptr, 0, bytes, 0));
}

void synchronize() {
  TR_CUDA_CHECK(cudaDeviceSynchronize());
}

}  // namespace tr::cuda
