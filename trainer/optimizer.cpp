#include "trainer/optimizer.h"

#include <charconv>
#include <cmath>

#include "layers/cpu/kernels.h"
#include "layers/device.h"
#include "layers/device_ops.h"
#include "layers/error.h"

namespace tr {

namespace {

// Shortest text that reads back as the same double: "0.9", "1e-08", "nan".
std::string number_text(double x) {
  char buffer[64];
  auto result = std::to_chars(buffer, buffer + sizeof(buffer), x);
  return std::string(buffer, result.ptr);
}

void require(bool ok, const char* key, const char* expected, double got) {
  if (!ok) {
    throw UserError(std::string("train.optimizer.") + key + ": expected " + expected + ", got " +
                    number_text(got));
  }
}

// Negated comparisons below so that NaN fails every check.
bool in_unit_interval(double x) {
  return x >= 0.0 && x < 1.0;
}
bool non_negative(double x) {
  return x >= 0.0 && std::isfinite(x);
}

}  // namespace

void validate_adamw_config(const AdamWConfig& config) {
  require(in_unit_interval(config.beta1), "beta1", "in [0, 1)", config.beta1);
  require(in_unit_interval(config.beta2), "beta2", "in [0, 1)", config.beta2);
  require(non_negative(config.eps), "eps", ">= 0", config.eps);
  require(non_negative(config.weight_decay), "weight_decay", ">= 0", config.weight_decay);
}

void validate_sgd_config(const SGDConfig& config) {
  require(non_negative(config.momentum), "momentum", ">= 0", config.momentum);
  require(non_negative(config.weight_decay), "weight_decay", ">= 0", config.weight_decay);
}

// ---- Optimizer -------------------------------------------------------------------------------

Optimizer::Optimizer(ParameterList params) : params_(std::move(params)) {
  for (const Parameter* p : params_) {
    TR_CHECK(p != nullptr, "optimizer given a null parameter");
    const DType dtype = p->value.dtype();
    TR_CHECK(dtype == DType::f32 || dtype == DType::f64, "optimizer: parameter " + p->name +
                                                             " is " + dtype_name(dtype) +
                                                             "; master weights are f32 or f64");
    TR_CHECK(p->grad.defined() && p->grad.dtype() == dtype && p->grad.numel() == p->value.numel(),
             "optimizer: gradient of " + p->name + " does not match its value");
    TR_CHECK(p->grad.device() == p->value.device(),
             "optimizer: gradient of " + p->name + " is on another device than its value");
    TR_CHECK(p->value.device() == Device::cpu || dtype == DType::f32,
             "optimizer: CUDA parameters are f32 (" + p->name + ")");
  }
}

void Optimizer::add_state(std::string name) {
  std::vector<Tensor> tensors;
  tensors.reserve(params_.size());
  for (const Parameter* p : params_) {
    tensors.push_back(Tensor::zeros(p->value.shape(), p->value.dtype(), p->value.device()));
  }
  state_names_.push_back(std::move(name));
  state_.push_back(std::move(tensors));
}

void Optimizer::step(double lr) {
  TR_CHECK(std::isfinite(lr) && lr >= 0.0, "optimizer step with learning rate " + number_text(lr));
  ++step_count_;
  update(lr);
}

void Optimizer::zero_grad() {
  for (Parameter* p : params_) p->grad.zero_();
}

void Optimizer::to_device(Device device) {
  for (std::vector<Tensor>& tensors : state_)
    for (Tensor& t : tensors) t = tr::to_device(t, device);
}

void Optimizer::set_step_count(std::int64_t steps) {
  TR_CHECK(steps >= 0, "negative optimizer step count " + std::to_string(steps));
  step_count_ = steps;
}

std::size_t Optimizer::state_index(std::string_view name) const {
  for (std::size_t i = 0; i < state_names_.size(); ++i) {
    if (state_names_[i] == name) return i;
  }
  throw InternalError(std::string(type()) + " has no state tensor '" + std::string(name) + "'");
}

Tensor& Optimizer::state(std::size_t param_index, std::string_view name) {
  TR_CHECK(param_index < params_.size(), "optimizer state: parameter index out of range");
  return state_[state_index(name)][param_index];
}

const Tensor& Optimizer::state(std::size_t param_index, std::string_view name) const {
  TR_CHECK(param_index < params_.size(), "optimizer state: parameter index out of range");
  return state_[state_index(name)][param_index];
}

// ---- AdamW -----------------------------------------------------------------------------------

AdamW::AdamW(ParameterList params, const AdamWConfig& config)
    : Optimizer(std::move(params)), config_(config) {
  validate_adamw_config(config_);
  add_state("exp_avg");
  add_state("exp_avg_sq");
}

namespace {

template <typename T>
void adamw_parameter(Parameter& p, Tensor& m, Tensor& v, double lr, const AdamWConfig& c,
                     std::int64_t step) {
  const double weight_decay = p.decay ? c.weight_decay : 0.0;
  if (p.value.device() == Device::cuda)  // f32 (checked at construction); the same constants
    return flat::adamw_update(Device::cuda, p.value.data<float>(), p.grad.data<float>(),
                              m.data<float>(), v.data<float>(), p.value.numel(),
                              static_cast<float>(lr), static_cast<float>(c.beta1),
                              static_cast<float>(c.beta2), static_cast<float>(c.eps),
                              static_cast<float>(weight_decay), step);
  cpu::adamw_update<T>(p.value.data<T>(), p.grad.data<T>(), m.data<T>(), v.data<T>(),
                       p.value.numel(), static_cast<T>(lr), static_cast<T>(c.beta1),
                       static_cast<T>(c.beta2), static_cast<T>(c.eps), static_cast<T>(weight_decay),
                       step);
}

template <typename T>
void sgd_parameter(Parameter& p, Tensor* buf, double lr, const SGDConfig& c, bool first_step) {
  const double weight_decay = p.decay ? c.weight_decay : 0.0;
  if (p.value.device() == Device::cuda)
    return flat::sgd_update(Device::cuda, p.value.data<float>(), p.grad.data<float>(),
                            buf ? buf->data<float>() : nullptr, p.value.numel(),
                            static_cast<float>(lr), static_cast<float>(c.momentum),
                            static_cast<float>(weight_decay), first_step);
  cpu::sgd_update<T>(p.value.data<T>(), p.grad.data<T>(), buf ? buf->data<T>() : nullptr,
                     p.value.numel(), static_cast<T>(lr), static_cast<T>(c.momentum),
                     static_cast<T>(weight_decay), first_step);
}

}  // namespace

void AdamW::update(double lr) {
  const ParameterList& params = parameters();
  for (std::size_t i = 0; i < params.size(); ++i) {
    Parameter& p = *params[i];
    Tensor& m = state(i, "exp_avg");
    Tensor& v = state(i, "exp_avg_sq");
    if (p.value.dtype() == DType::f64) {
      adamw_parameter<double>(p, m, v, lr, config_, step_count());
    } else {
      adamw_parameter<float>(p, m, v, lr, config_, step_count());
    }
  }
}

// ---- SGD -------------------------------------------------------------------------------------

SGD::SGD(ParameterList params, const SGDConfig& config)
    : Optimizer(std::move(params)), config_(config) {
  validate_sgd_config(config_);
  // torch keeps no buffer without momentum; neither do we, so such checkpoints hold no state.
  if (config_.momentum != 0.0) add_state("momentum_buffer");
}

void SGD::update(double lr) {
  const ParameterList& params = parameters();
  const bool has_buffer = config_.momentum != 0.0;
  // torch initialises the buffer with the first gradient; after a resume the restored count
  // (> 0) makes the loaded buffer be used instead.
  const bool first_step = step_count() == 1;
  for (std::size_t i = 0; i < params.size(); ++i) {
    Parameter& p = *params[i];
    Tensor* buf = has_buffer ? &state(i, "momentum_buffer") : nullptr;
    if (p.value.dtype() == DType::f64) {
      sgd_parameter<double>(p, buf, lr, config_, first_step);
    } else {
      sgd_parameter<float>(p, buf, lr, config_, first_step);
    }
  }
}

}  // namespace tr
