// How the kernel and op tests measure a result against its reference. Both are infinite where
// any element is NaN (outputs start poisoned with NaN, so an element a kernel did not write
// fails) or the sizes differ.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

namespace tr::testing {

// max |a - b| / max(|b|, floor): relative error against the reference b, with a floor so that
// values near zero are compared absolutely.
template <typename A, typename B>
double max_rel_error(const std::vector<A>& a, const std::vector<B>& b, double floor = 1.0) {
  if (a.size() != b.size()) return INFINITY;
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i]));
    const double e = d / std::max(std::abs(static_cast<double>(b[i])), floor);
    if (!(e <= worst)) worst = std::isnan(e) ? INFINITY : e;
  }
  return worst;
}

// max |a - b| / max |b|: the measure for fp32 results summed in another order, whose elements
// near zero carry the rounding of the largest terms.
template <typename A, typename B>
double max_error_to_largest(const std::vector<A>& a, const std::vector<B>& b) {
  double largest = 0;
  for (const B& x : b) largest = std::max(largest, std::abs(static_cast<double>(x)));
  return max_rel_error(a, b, largest > 0 ? largest : 1.0);
}

// ||a - b|| / ||b|| (2-norms): the measure for bf16 results, whose elements near zero carry the
// rounding of much larger terms.
template <typename A, typename B>
double norm_rel_error(const std::vector<A>& a, const std::vector<B>& b) {
  if (a.size() != b.size()) return INFINITY;
  double diff = 0, ref = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    diff += d * d;
    ref += static_cast<double>(b[i]) * static_cast<double>(b[i]);
  }
  const double e = ref > 0 ? std::sqrt(diff / ref) : std::sqrt(diff);
  return std::isnan(e) ? INFINITY : e;
}

}  // namespace tr::testing
