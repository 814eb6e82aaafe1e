#include "trainer/device_residency.h"

#include <cstdio>
#include <string>

#include "trainer/config.h"

namespace tr {

namespace {

MatmulPrecision matmul_precision(const RunConfig& c) {
  return c.train.precision == "bf16" ? MatmulPrecision::bf16 : MatmulPrecision::fp32;
}

// "GPU 0 (NVIDIA H100 80GB HBM3)": the current GPU, for messages.
std::string current_gpu() {
  return "GPU " + std::to_string(current_cuda_device()) + " (" + current_cuda_device_name() + ")";
}

}  // namespace

Device resolve_training_device(const RunConfig& c) {
  Device device = Device::cpu;
  if (c.train.device == "cuda") {
    if (cuda_device_count() == 0)
      throw UserError("train.device: cuda requested, but no CUDA device is usable (" +
                      cuda_unavailable_reason() + "); use cpu or auto");
    device = Device::cuda;
  } else if (c.train.device == "auto" && cuda_device_count() > 0) {
    device = Device::cuda;
  }
  // bf16: the matrix products take bf16 operands (fp32 accumulation, weights, optimizer state),
  // and on the CPU the blocks' activations are bf16.
  set_training_precision(matmul_precision(c), device);
  return device;
}

Device inference_device(const std::string& choice, const std::string& key) {
  if (choice != "cpu" && choice != "cuda" && choice != "auto")
    throw UserError(key + ": expected cpu, cuda or auto, got '" + choice + "'");
  if (choice == "cpu") return Device::cpu;
  if (cuda_device_count() == 0) {
    if (choice == "auto") return Device::cpu;
    throw UserError(key + ": cuda requested, but no CUDA device is usable (" +
                    cuda_unavailable_reason() + "); use cpu or auto");
  }
  const std::string problem = cuda_device_problem(MatmulPrecision::fp32);
  if (problem.empty()) return Device::cuda;
  const std::string gpu = current_gpu();
  if (choice == "cuda")
    throw UserError(key + ": cuda requested, but this trainer cannot use " + gpu + ": " + problem +
                    "; or use cpu");
  std::fprintf(stderr, "%s: running on the CPU: this trainer cannot use %s: %s\n", key.c_str(),
               gpu.c_str(), problem.c_str());
  return Device::cpu;
}

void require_usable_cuda_device(const RunConfig& c) {
  const std::string problem = cuda_device_problem(matmul_precision(c));
  if (!problem.empty())
    throw UserError("train.device: " + c.train.device + " chose " + current_gpu() +
                    ", which this trainer cannot use: " + problem + "; or use train.device: cpu");
}

void upload_batch(Batch& d, const Batch& h, Device device) {
  const auto put = [device](Tensor& dst, const Tensor& src) {
    if (!src.defined()) {
      dst = Tensor();
      return;
    }
    ensure_shape(dst, src.shape(), src.dtype(), device);
    dst.copy_from(src);
  };
  put(d.src, h.src);
  put(d.src_len, h.src_len);
  put(d.tgt_in, h.tgt_in);
  put(d.tgt_out, h.tgt_out);
  put(d.tgt_len, h.tgt_len);
  put(d.images, h.images);
  put(d.labels, h.labels);
  const auto keep_on_host = [device](Tensor& dst, const Tensor& src) {
    if (!src.defined() || device == Device::cpu) {
      dst = Tensor();
      return;
    }
    ensure_shape(dst, src.shape(), src.dtype(), Device::cpu);
    dst.copy_from(src);
  };
  keep_on_host(d.tgt_out_host, h.tgt_out);
  keep_on_host(d.labels_host, h.labels);
}

void TrainingState::to_device(Device device) const {
  if (model) model->to_device(device);
  if (optimizer) optimizer->to_device(device);
  if (sharded) sharded->to_device(device);
}

HostResidency::HostResidency(const TrainingState& state, Device device)
    : state_(state), device_(device) {
  if (device_ != Device::cpu) state_.to_device(Device::cpu);
}

HostResidency::~HostResidency() noexcept(false) {
  if (device_ != Device::cpu) state_.to_device(device_);
}

}  // namespace tr
