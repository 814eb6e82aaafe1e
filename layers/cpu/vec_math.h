// Branch-free float exp and erf that the compiler vectorises (std::expf / std::erff are scalar
// libm calls). Used by the fp32 kernels only; the fp64 kernels keep std::exp / std::erf, so the
// fp64 gradient checks see the exact functions.
//
// Accuracy (measured against the double functions over their whole float domain):
//   exp_f: <= 2 ulp for x in [-87.3, 88.7]; exactly 0 below -87.34 (so exp(-inf) == 0, as masked
//          scores need), +inf above 88.73, NaN for NaN.
//   erf_f: absolute error <= 2e-7 (relative <= 3 ulp away from 0); +-1 beyond |x| >= 4; NaN for
//          NaN.
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

// erf(x) as x * P(x^2) / Q(x^2) on x clamped to [-4, 4] (the rational approximation used by
// Eigen and XLA for float erf); erf(+-4) rounds to +-1 in float.
inline float erf_f(float x) {
  float xc = x > 4.0f ? 4.0f : x;  // NaN stays NaN
  xc = xc < -4.0f ? -4.0f : xc;
  const float x2 = xc * xc;
  float p = -2.72614225801306e-10f;
  p = p * x2 + 2.77068142495902e-08f;
  p = p * x2 + -2.10102402082508e-06f;
  p = p * x2 + -5.69250639462346e-05f;
  p = p * x2 + -7.34990630326855e-04f;
  p = p * x2 + -2.95459980854025e-03f;
  p = p * x2 + -1.60960333262415e-02f;
  p = p * xc;
  float q = -1.45660718464996e-05f;
  q = q * x2 + -2.13374055278905e-04f;
  q = q * x2 + -1.68282697438203e-03f;
  q = q * x2 + -7.37332916720468e-03f;
  q = q * x2 + -1.42647390514189e-02f;
  return p / q;
}

}  // namespace tr::cpu::vm
