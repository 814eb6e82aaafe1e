// Branch-free float exp and normal CDF that the compiler vectorises (std::exp / std::erf on float
// are scalar libm calls). Used by the fp32 kernels only; the fp64 kernels keep std::exp / std::erf,
// so the fp64 gradient checks see the exact functions.
//
// Accuracy (measured against the double functions over their whole float domain):
//   exp_f: <= 2 ulp for x in [-87.3, 88.7]; exactly 0 below -87.34 (so exp(-inf) == 0, as masked
//          scores need), +inf above 88.73, NaN for NaN.
//   normal_cdf_f: x * normal_cdf_f(x) (GELU) within 4e-7 absolute of the exact value over
//          [-12, 12] (libm's erff in the same formula: 4.5e-7), relative 2e-5 in the far
//          negative tail; NaN for NaN.
#pragma once

#include <cstdint>
#include <cstring>

namespace tr::cpu::vm {

inline float bits_to_float(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// e^x. Range reduction x = n ln2 + r, |r| <= ln2/2 (Cody-Waite, two-part ln2), a degree-6
// polynomial for e^r (Cephes' expf coefficients), then scaling by 2^n built from the exponent
// bits. n is rounded with the 1.5 * 2^23 trick, so no rounding instruction is needed (SSE2).
inline float exp_f(float x) {
  constexpr float kHi = 88.7228317f, kLo = -87.3365479f;
  float xc = x > kHi ? kHi : x;  // NaN compares false and stays NaN
  xc = xc < kLo ? kLo : xc;
  constexpr float kShift = 12582912.0f;  // 1.5 * 2^23
  const float t = xc * 1.44269504088896341f + kShift;
  const float n = t - kShift;  // round(xc / ln2)
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  // 2^n as 2^(n-1) * 2: n reaches 128 at the top of the range, where 2^n itself overflows.
  std::int32_t ni;
  {
    std::uint32_t tb;
    std::memcpy(&tb, &t, sizeof tb);
    ni = static_cast<std::int32_t>(tb - 0x4B400000u);  // integer n from the shifted mantissa
  }
  const float scale = bits_to_float(static_cast<std::uint32_t>(ni + 126) << 23);
  float y = p * scale * 2.0f;
  y = x < kLo ? 0.0f : y;
  y = x > kHi ? __builtin_inff() : y;
  return y;
}

// Phi(x) = 0.5 * (1 + erf(x / sqrt(2))), the standard normal CDF (GELU's gate), through
// erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z/2), z = |x| / sqrt(2) (the Chebyshev fit of
// Numerical Recipes' erfcc, fractional error < 1.2e-7 for all z >= 0). Going through erfc keeps
// the relative accuracy in the negative tail, where 1 + erf(x) would cancel.
inline float normal_cdf_f(float x) {
  const float z = (x < 0.0f ? -x : x) * 0.707106781186547524f;
  const float t = 1.0f / (1.0f + 0.5f * z);
  float p = 0.17087277f;
  p = p * t - 0.82215223f;
  p = p * t + 1.48851587f;
  p = p * t - 1.13520398f;
  p = p * t + 0.27886807f;
  p = p * t - 0.18628806f;
  p = p * t + 0.09678418f;
  p = p * t + 0.37409196f;
  p = p * t + 1.00002368f;
  p = p * t - 1.26551223f;
  const float half_erfc = 0.5f * t * exp_f(p - z * z);
  return x >= 0.0f ? 1.0f - half_erfc : half_erfc;  // NaN: half_erfc is NaN
}

}  // namespace tr::cpu::vm
