#include "layers/cuda/cudnn/api.h"

#include <dlfcn.h>

#include <cstdlib>
#include <string>
#include <vector>

namespace tr::cudnn {

namespace {

struct Loaded {
  Api api{};
  bool ok = false;
  std::string reason;
  std::size_t version = 0;
};

void* open_library(std::string& tried) {
  std::vector<std::string> candidates = {"libcudnn.so.9"};
  if (const char* home = std::getenv("CUDA_HOME"); home && *home)
    candidates.push_back(std::string(home) + "/lib64/libcudnn.so.9");
  candidates.push_back("/usr/local/cuda/lib64/libcudnn.so.9");
  for (const std::string& name : candidates) {
    if (void* handle = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL)) return handle;
    tried += (tried.empty() ? "" : ", ") + name;
  }
  return nullptr;
}

template <typename F>
bool resolve(void* library, const char* symbol, F& slot, std::string& missing) {
  slot = reinterpret_cast<F>(dlsym(library, symbol));
  if (!slot) missing += (missing.empty() ? "" : ", ") + std::string(symbol);
  return slot != nullptr;
}

Loaded load() {
  Loaded out;
  if (const char* env = std::getenv("TR_CUDNN"); env && std::string(env) == "0") {
    out.reason = "switched off (TR_CUDNN=0)";
    return out;
  }
  std::string tried;
  void* library = open_library(tried);
  if (!library) {
    out.reason = "libcudnn.so.9 not found (tried " + tried + ")";
    return out;
  }
  Api& a = out.api;
  std::string missing;
  resolve(library, "cudnnGetVersion", a.GetVersion, missing);
  resolve(library, "cudnnGetErrorString", a.GetErrorString, missing);
  resolve(library, "cudnnGetLastErrorString", a.GetLastErrorString, missing);
  resolve(library, "cudnnCreate", a.Create, missing);
  resolve(library, "cudnnDestroy", a.Destroy, missing);
  resolve(library, "cudnnSetStream", a.SetStream, missing);
  resolve(library, "cudnnBackendCreateDescriptor", a.BackendCreateDescriptor, missing);
  resolve(library, "cudnnBackendDestroyDescriptor", a.BackendDestroyDescriptor, missing);
  resolve(library, "cudnnBackendSetAttribute", a.BackendSetAttribute, missing);
  resolve(library, "cudnnBackendGetAttribute", a.BackendGetAttribute, missing);
  resolve(library, "cudnnBackendFinalize", a.BackendFinalize, missing);
  resolve(library, "cudnnBackendExecute", a.BackendExecute, missing);
  if (!missing.empty()) {
    out.reason = "libcudnn.so.9 lacks " + missing;
    return out;  // the library stays loaded: unloading a half-used cuDNN is not worth the risk
  }
  out.version = a.GetVersion();
  // 9.8: device-property descriptors (sdpa_graphs.h): the described GPUs CI plans for, and the
  // fallback ways of naming a live GPU when its handle alone gives no plan.
  if (out.version < 90800) {
    out.reason = "cuDNN " + std::to_string(out.version) + " is older than 9.8";
    return out;
  }
  out.ok = true;
  return out;
}

const Loaded& loaded() {
  static const Loaded state = load();
  return state;
}

}  // namespace

const Api* api() {
  return loaded().ok ? &loaded().api : nullptr;
}

std::string unavailable_reason() {
  return loaded().reason;
}

std::size_t version() {
  return loaded().ok ? loaded().version : 0;
}

namespace {
std::string describe(const std::string& what, cudnnStatus_t status) {
  std::string text = what + ": " + std::to_string(static_cast<int>(status));
  if (const Api* a = api()) {
    text = what + ": " + a->GetErrorString(status);
    char last[512] = {};
    a->GetLastErrorString(last, sizeof last);
    if (last[0]) text += " (" + std::string(last) + ")";
  }
  return text;
}
}  // namespace

Error::Error(const std::string& what, cudnnStatus_t status)
    : std::runtime_error(describe(what, status)), status_(status) {}

void check(cudnnStatus_t status, const char* what) {
  if (status != CUDNN_STATUS_SUCCESS) throw Error(what, status);
}

Descriptor::Descriptor(cudnnBackendDescriptorType_t type) {
  const Api* a = api();
  if (!a) throw Error("cuDNN is not loaded: " + unavailable_reason(), CUDNN_STATUS_NOT_INITIALIZED);
  check(a->BackendCreateDescriptor(type, &raw_), "cudnnBackendCreateDescriptor");
}

Descriptor::~Descriptor() {
  if (raw_) api()->BackendDestroyDescriptor(raw_);
}

Descriptor& Descriptor::operator=(Descriptor&& other) noexcept {
  if (this != &other) {
    if (raw_) api()->BackendDestroyDescriptor(raw_);
    raw_ = std::exchange(other.raw_, nullptr);
  }
  return *this;
}

Descriptor& Descriptor::set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type,
                            std::int64_t count, const void* values) {
  const cudnnStatus_t status = api()->BackendSetAttribute(raw_, name, type, count, values);
  if (status != CUDNN_STATUS_SUCCESS)
    throw Error(
        "cudnnBackendSetAttribute(attribute " + std::to_string(static_cast<int>(name)) + ")",
        status);
  return *this;
}

Descriptor& Descriptor::set_int64(cudnnBackendAttributeName_t name, std::int64_t value) {
  return set(name, CUDNN_TYPE_INT64, 1, &value);
}

Descriptor& Descriptor::set_int64s(cudnnBackendAttributeName_t name, const std::int64_t* values,
                                   std::int64_t count) {
  return set(name, CUDNN_TYPE_INT64, count, values);
}

Descriptor& Descriptor::set_bool(cudnnBackendAttributeName_t name, bool value) {
  return set(name, CUDNN_TYPE_BOOLEAN, 1, &value);
}

Descriptor& Descriptor::set_type(cudnnBackendAttributeName_t name, cudnnDataType_t value) {
  return set(name, CUDNN_TYPE_DATA_TYPE, 1, &value);
}

Descriptor& Descriptor::set_desc(cudnnBackendAttributeName_t name, const Descriptor& value) {
  cudnnBackendDescriptor_t raw = value.raw();
  return set(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &raw);
}

Descriptor& Descriptor::finalize(const char* what) {
  check(api()->BackendFinalize(raw_), what);
  return *this;
}

cudnnStatus_t Descriptor::try_finalize() {
  return api()->BackendFinalize(raw_);
}

}  // namespace tr::cudnn
