// cuDNN's backend (graph) API, loaded at run time: the trainer starts, and keeps its own
// attention kernels, on hosts without cuDNN (the bundle carries no CUDA libraries; a GPU host's
// cuDNN may come with the toolkit or with PyTorch's wheels). Host code only, no CUDA runtime
// calls, so descriptors and operation graphs can be built, and checked, on a machine without a
// GPU (tests/cudnn/test_cudnn_attention_graphs.cpp).
#pragma once

#include <cudnn.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

namespace tr::cudnn {

// The functions of libcudnn.so.9 this project calls.
struct Api {
  std::size_t (*GetVersion)();
  const char* (*GetErrorString)(cudnnStatus_t);
  void (*GetLastErrorString)(char*, std::size_t);
  cudnnStatus_t (*Create)(cudnnHandle_t*);
  cudnnStatus_t (*Destroy)(cudnnHandle_t);
  cudnnStatus_t (*SetStream)(cudnnHandle_t, cudaStream_t);
  cudnnStatus_t (*BackendCreateDescriptor)(cudnnBackendDescriptorType_t, cudnnBackendDescriptor_t*);
  cudnnStatus_t (*BackendDestroyDescriptor)(cudnnBackendDescriptor_t);
  cudnnStatus_t (*BackendSetAttribute)(cudnnBackendDescriptor_t, cudnnBackendAttributeName_t,
                                       cudnnBackendAttributeType_t, std::int64_t, const void*);
  cudnnStatus_t (*BackendGetAttribute)(cudnnBackendDescriptor_t, cudnnBackendAttributeName_t,
                                       cudnnBackendAttributeType_t, std::int64_t, std::int64_t*,
                                       void*);
  cudnnStatus_t (*BackendFinalize)(cudnnBackendDescriptor_t);
  cudnnStatus_t (*BackendExecute)(cudnnHandle_t, cudnnBackendDescriptor_t,
                                  cudnnBackendDescriptor_t);
};

// The loaded library (dlopen of libcudnn.so.9 from the loader's path, then $CUDA_HOME/lib64
// and /usr/local/cuda/lib64), or nullptr when there is none, it is older than 9.8, or the
// environment has TR_CUDNN=0. Loaded once, on first call.
const Api* api();
// Why api() is nullptr ("" when it is not).
std::string unavailable_reason();
// The loaded version as cuDNN numbers it (91900 for 9.19.0); 0 when none is loaded.
std::size_t version();

// A failed cuDNN call: what was called, the status and cuDNN's last error message.
class Error : public std::runtime_error {
 public:
  Error(const std::string& what, cudnnStatus_t status);
  cudnnStatus_t status() const { return status_; }

 private:
  cudnnStatus_t status_;
};

// Throws Error when `status` is not success.
void check(cudnnStatus_t status, const char* what);

// One backend descriptor, destroyed with its owner. Attribute setters check each call.
class Descriptor {
 public:
  Descriptor() = default;
  explicit Descriptor(cudnnBackendDescriptorType_t type);
  ~Descriptor();
  Descriptor(Descriptor&& other) noexcept : raw_(std::exchange(other.raw_, nullptr)) {}
  Descriptor& operator=(Descriptor&& other) noexcept;
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;

  cudnnBackendDescriptor_t raw() const { return raw_; }
  explicit operator bool() const { return raw_ != nullptr; }

  Descriptor& set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type,
                  std::int64_t count, const void* values);
  Descriptor& set_int64(cudnnBackendAttributeName_t name, std::int64_t value);
  Descriptor& set_int64s(cudnnBackendAttributeName_t name, const std::int64_t* values,
                         std::int64_t count);
  Descriptor& set_bool(cudnnBackendAttributeName_t name, bool value);
  Descriptor& set_type(cudnnBackendAttributeName_t name, cudnnDataType_t value);
  Descriptor& set_desc(cudnnBackendAttributeName_t name, const Descriptor& value);
  // Finalizes; throws Error naming `what` on failure.
  Descriptor& finalize(const char* what);
  // Finalizes, returning the status instead of throwing (engine configurations that a
  // device cannot run fail here).
  cudnnStatus_t try_finalize();

 private:
  cudnnBackendDescriptor_t raw_ = nullptr;
};

}  // namespace tr::cudnn
