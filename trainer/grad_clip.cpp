#include "trainer/grad_clip.h"

#include <algorithm>
#include <cmath>
#include <vector>

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
  // Each tensor's sum, then their total in parameter order. CUDA gradients are reduced on the
  // device and read back together: one synchronisation per step, not one per tensor.
  std::vector<double> sums(params.size(), 0.0);
  std::vector<const float*> cuda_grads;
  std::vector<std::int64_t> cuda_sizes;
  std::vector<std::size_t> cuda_index;
  for (std::size_t i = 0; i < params.size(); ++i) {
    check_float(*params[i]);
    const Tensor& g = params[i]->grad;
    if (on_cuda(g)) {
      cuda_grads.push_back(g.data<float>());
      cuda_sizes.push_back(g.numel());
      cuda_index.push_back(i);
      continue;
    }
    sums[i] = g.dtype() == DType::f64 ? cpu::sum_squares(g.data<double>(), g.numel())
                                      : cpu::sum_squares(g.data<float>(), g.numel());
  }
  if (!cuda_grads.empty()) {
    std::vector<double> cuda_sums(cuda_grads.size());
    flat::sum_squares_each(Device::cuda, cuda_sums.data(), cuda_grads.data(), cuda_sizes.data(),
                           static_cast<std::int64_t>(cuda_grads.size()));
    for (std::size_t k = 0; k < cuda_index.size(); ++k) sums[cuda_index[k]] = cuda_sums[k];
  }
  double total = 0.0;
  for (double s : sums) total += s;
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
