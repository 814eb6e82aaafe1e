// Optimizers: AdamW and SGD with momentum, exactly as torch.optim.AdamW and torch.optim.SGD.
//
// Parameters whose Parameter::decay is false (biases, LayerNorm, cls_token, pos_embed) form a
// second group with weight decay 0, as in the usual two-group PyTorch set-up:
//
//   torch.optim.AdamW([{"params": decay, "weight_decay": wd},
//                      {"params": no_decay, "weight_decay": 0.0}], lr, betas, eps)
//
// The learning rate is an argument of step(), so the schedule (trainer/lr_schedule.h) stays a
// pure function of the step number. Per-parameter state tensors (torch's names: exp_avg,
// exp_avg_sq, momentum_buffer) are allocated once, at construction, with the parameter's
// shape, dtype and device; the checkpoint code reads and restores them through state() and
// set_step_count(). Parameters may be f32 or f64 (the kernel is chosen per parameter); CUDA
// parameters are f32 and updated by the CUDA kernels (the CPU's operations in its order).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "layers/parameter.h"
#include "layers/tensor.h"

namespace tr {

struct AdamWConfig {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;  // torch.optim.AdamW's default
};

struct SGDConfig {
  double momentum = 0.0;
  double weight_decay = 0.0;
};

// Throw UserError naming the offending key under `train.optimizer.` (e.g.
// "train.optimizer.beta2: expected in [0, 1), got 1"). The constructors call these too.
void validate_adamw_config(const AdamWConfig& config);
void validate_sgd_config(const SGDConfig& config);

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter from its current gradient, with learning rate `lr`.
  // Counts the step first, so the first call is step 1 (bias correction as in torch).
  void step(double lr);
  // Sets every parameter's gradient to zero (backward accumulates into it).
  void zero_grad();

  // "adamw" or "sgd": what a checkpoint records to refuse loading state of another kind.
  virtual const char* type() const = 0;

  // Number of completed steps. A checkpoint saves it; set_step_count restores it together
  // with the state tensors, after which step() continues bit for bit.
  std::int64_t step_count() const { return step_count_; }
  void set_step_count(std::int64_t steps);
  // Moves the state tensors to `device` (with the parameters: Model::to_device). A checkpoint
  // is written and restored on the host, so the trainer moves state there and back.
  void to_device(Device device);

  const ParameterList& parameters() const { return params_; }
  // Names of the state tensors every parameter has, in a fixed order ({} for SGD without
  // momentum, which keeps no state).
  const std::vector<std::string>& state_names() const { return state_names_; }
  // State tensor `name` of parameter `param_index` (index into parameters()). Restoring a
  // checkpoint writes into it (Tensor::copy_from); the buffer itself never changes.
  Tensor& state(std::size_t param_index, std::string_view name);
  const Tensor& state(std::size_t param_index, std::string_view name) const;

 protected:
  explicit Optimizer(ParameterList params);
  // Adds one zero-initialised state tensor per parameter, named `name`.
  void add_state(std::string name);
  // Applies the update for step number step_count() (already incremented).
  virtual void update(double lr) = 0;

 private:
  std::size_t state_index(std::string_view name) const;

  ParameterList params_;
  std::vector<std::string> state_names_;
  std::vector<std::vector<Tensor>> state_;  // [state name][parameter]
  std::int64_t step_count_ = 0;
};

class AdamW final : public Optimizer {
 public:
  AdamW(ParameterList params, const AdamWConfig& config);
  const char* type() const override { return "adamw"; }
  const AdamWConfig& config() const { return config_; }

 private:
  void update(double lr) override;
  AdamWConfig config_;
};

class SGD final : public Optimizer {
 public:
  SGD(ParameterList params, const SGDConfig& config);
  const char* type() const override { return "sgd"; }
  const SGDConfig& config() const { return config_; }

 private:
  void update(double lr) override;
  SGDConfig config_;
};

}  // namespace tr
