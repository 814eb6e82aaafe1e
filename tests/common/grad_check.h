// Central finite differences in fp64 against the analytic backward of a module or model.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "layers/tensor.h"

namespace tr::testing {

inline Tensor random_tensor(const Shape& shape, std::mt19937_64& rng, double scale = 1.0,
                            DType dtype = DType::f64) {
  Tensor t = Tensor::empty(shape, dtype);
  std::normal_distribution<double> dist(0.0, scale);
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    if (dtype == DType::f64)
      t.data<double>()[i] = dist(rng);
    else
      t.data<float>()[i] = static_cast<float>(dist(rng));
  }
  return t;
}

// sum(y * w): a scalar whose gradient wrt y is w, so backward is driven by dy = w.
inline double weighted_sum(const Tensor& y, const Tensor& w) {
  double s = 0;
  for (std::int64_t i = 0; i < y.numel(); ++i) s += y.data<double>()[i] * w.data<double>()[i];
  return s;
}

struct Checked {
  std::string name;
  Tensor value;     // perturbed in place
  Tensor analytic;  // gradient from backward, read after `loss_and_backward` ran
};

// `loss` runs a forward pass and returns the scalar. `loss_and_backward` runs forward and
// backward once, filling the analytic gradients. For each checked tensor, up to `max_elements`
// elements (all when <= 0) are perturbed by +-h; expects the relative error
// max|analytic - numeric| / max(max|numeric|, 1e-2) <= tol for each tensor. The floor keeps
// gradients that are exactly zero in theory (a key bias under softmax) from dividing
// round-off noise (~1e-10) by zero; below it the bound is absolute (1e-8 for tol 1e-6).
inline void expect_gradients_match(const std::function<double()>& loss,
                                   const std::function<void()>& loss_and_backward,
                                   std::vector<Checked> checked, double tol = 1e-6,
                                   int max_elements = 0, double h = 1e-5) {
  loss_and_backward();
  std::vector<Tensor> analytic;
  for (auto& c : checked) analytic.push_back(c.analytic.clone());  // backward may reuse buffers
  std::mt19937_64 rng(7);
  for (std::size_t k = 0; k < checked.size(); ++k) {
    auto& c = checked[k];
    double* v = c.value.data<double>();
    const double* a = analytic[k].data<double>();
    const std::int64_t n = c.value.numel();
    std::vector<std::int64_t> idx(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) idx[i] = i;
    if (max_elements > 0 && n > max_elements) {
      std::shuffle(idx.begin(), idx.end(), rng);
      idx.resize(static_cast<std::size_t>(max_elements));
    }
    double max_err = 0, max_num = 0;
    for (std::int64_t i : idx) {
      const double saved = v[i];
      v[i] = saved + h;
      const double up = loss();
      v[i] = saved - h;
      const double down = loss();
      v[i] = saved;
      const double numeric = (up - down) / (2 * h);
      max_err = std::max(max_err, std::abs(numeric - a[i]));
      max_num = std::max(max_num, std::abs(numeric));
    }
    const double rel = max_err / std::max(max_num, 1e-2);
    EXPECT_LE(rel, tol) << c.name << ": relative error " << rel << " (max |grad| " << max_num
                        << ")";
  }
}

}  // namespace tr::testing
