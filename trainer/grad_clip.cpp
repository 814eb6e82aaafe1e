#include "trainer/grad_clip.h"

#include <algorithm>
#include <cmath>

#include "layers/cpu/kernels.h"
#include "layers/device_ops.h"
#include "layers/error.h"

namespace tr {

namespace {

// CUDA gradients are f32 and take the CUDA kernels (the same fixed-order double sums).
void check_float(const Parameter& p) {
  TR_CHECK(p.grad.dtype() == DType::f32 || p.grad.dtype() == DType::f64,
           "gradient of " + p.name + " is " + dtype_name(p.grad.dtype()));
}
bool on_cuda(const Tensor& g) {
  return g.device() == Device::cuda;
}

}  // namespace

double grad_sum_squares(const ParameterList& params) {
  double total = 0.0;
  for (const Parameter* p : params) {
    check_float(*p);
    const Tensor& g = p->grad;
    if (on_cuda(g)) {
      total += flat::sum_squares(Device::cuda, g.data<float>(), g.numel());
      continue;
    }
    total += g.dtype() == DType::f64 ? cpu::sum_squares(g.data<double>(), g.numel())
                                     : cpu::sum_squares(g.data<float>(), g.numel());
  }
  return total;
}

double global_grad_norm(const ParameterList& params, const SumSquaresReducer& reduce_sum_squares) {
  double sum = grad_sum_squares(params);
  if (reduce_sum_squares) sum = reduce_sum_squares(sum);
  return std::sqrt(sum);
}

double clip_coefficient(double total_norm, double max_norm) {
  const double coefficient = max_norm / (total_norm + 1e-6);
  // A NaN norm must stay visible to the caller, not become "no clipping".
  if (std::isnan(coefficient)) return coefficient;
  return std::min(coefficient, 1.0);
}

void scale_grads(const ParameterList& params, double coefficient) {
  for (Parameter* p : params) {
    check_float(*p);
    Tensor& g = p->grad;
    if (on_cuda(g)) {
      flat::scale(Device::cuda, g.data<float>(), static_cast<float>(coefficient), g.numel());
    } else if (g.dtype() == DType::f64) {
      cpu::scale(g.data<double>(), g.data<double>(), coefficient, g.numel());
    } else {
      cpu::scale(g.data<float>(), g.data<float>(), static_cast<float>(coefficient), g.numel());
    }
  }
}

double clip_grad_norm(const ParameterList& params, double max_norm,
                      const SumSquaresReducer& reduce_sum_squares) {
  TR_CHECK(max_norm > 0.0, "clip_grad_norm with max_norm " + std::to_string(max_norm) +
                               "; the trainer skips clipping when it is disabled");
  const double norm = global_grad_norm(params, reduce_sum_squares);
  const double coefficient = clip_coefficient(norm, max_norm);
  if (coefficient < 1.0) scale_grads(params, coefficient);
  return norm;
}

ParameterList tensor_parallel_norm_share(const ParameterList& params, int tp_rank) {
  ParameterList share;
  for (Parameter* p : params)
    if (p->sharded() || tp_rank == 0) share.push_back(p);
  return share;
}

double clip_grad_norm_split(const ParameterList& params, const ParameterList& norm_params,
                            double max_norm, const SumSquaresReducer& reduce_sum_squares) {
  TR_CHECK(max_norm > 0.0, "clip_grad_norm_split with max_norm " + std::to_string(max_norm));
  const double norm = global_grad_norm(norm_params, reduce_sum_squares);
  const double coefficient = clip_coefficient(norm, max_norm);
  if (coefficient < 1.0) scale_grads(params, coefficient);
  return norm;
}

}  // namespace tr
