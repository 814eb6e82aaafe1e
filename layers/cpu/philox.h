// Philox4x32-10 counter-based random numbers (Salmon et al., SC'11; Random123).
//
// A draw is a pure function of (seed, stream, position), so a mask or an initial weight never
// depends on thread scheduling, on how the work is split, or on what was drawn before. The
// same bit-exact functions are usable from CUDA (TR_PHILOX_FN), so both devices draw equal numbers.
//
// Layout of one Philox call (a "block", four 32-bit words out):
//   key     = (seed lo32, seed hi32)
//   counter = (block lo32, block hi32, stream lo32, stream hi32)
// The stream sits in the counter rather than being hashed into the key: distinct (stream,
// block) pairs are distinct counters, so two streams of one seed can never overlap.
//
// Addressing, per consumer:
// - 32-bit words (dropout_mask, philox_uniform_float): position c = offset + i reads word
//   (c & 3) of block (c >> 2); uniform u = (word >> 8) * 2^-24 in [0, 1).
// - doubles (philox_uniform, philox_normal): position c = offset + i uses all of block c.
//   uniform: 53 bits from (w1:w0), in [0, 1).
//   normal (Box-Muller, cosine branch): u1 from (w1:w0) in (0, 1], u2 from (w3:w2) in [0, 1),
//   z = sqrt(-2 ln u1) * cos(2 pi u2).
// A sub-range drawn with offset o equals the slice [o, o + n) of a draw from offset 0.
// dropout_mask (declared in kernels.h, defined in philox.cpp) keeps element i iff u >= p.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define TR_PHILOX_FN __host__ __device__ __forceinline__
#else
#define TR_PHILOX_FN inline
#endif

namespace tr::cpu {

struct Philox4 {
  std::uint32_t v[4];
};

TR_PHILOX_FN Philox4 philox4x32_10(std::uint32_t c0, std::uint32_t c1, std::uint32_t c2,
                                   std::uint32_t c3, std::uint32_t k0, std::uint32_t k1) {
  constexpr std::uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr std::uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += kW0;
      k1 += kW1;
    }
    const std::uint64_t p0 = static_cast<std::uint64_t>(kM0) * c0;
    const std::uint64_t p1 = static_cast<std::uint64_t>(kM1) * c2;
    const std::uint32_t hi0 = static_cast<std::uint32_t>(p0 >> 32),
                        lo0 = static_cast<std::uint32_t>(p0);
    const std::uint32_t hi1 = static_cast<std::uint32_t>(p1 >> 32),
                        lo1 = static_cast<std::uint32_t>(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// The block at 64-bit index `block` of (seed, stream).
TR_PHILOX_FN Philox4 philox_block(std::uint64_t seed, std::uint64_t stream, std::uint64_t block) {
  return philox4x32_10(static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32),
                       static_cast<std::uint32_t>(stream), static_cast<std::uint32_t>(stream >> 32),
                       static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32));
}

// [0, 1) with 24 random bits: exact in float, so a comparison against p is bit-identical on
// every device.
TR_PHILOX_FN float philox_word_to_uniform(std::uint32_t w) {
  return static_cast<float>(w >> 8) * (1.0f / 16777216.0f);
}

// Dropout's keep decision of one word, philox_word_to_uniform(w) >= p: the uniform is
// (w >> 8) / 2^24 exactly, so the test is the integer comparison (w >> 8) >= ceil(p * 2^24),
// with the threshold formed once on the host, in double. Both devices' mask kernels use these.
inline std::uint32_t dropout_keep_threshold(float p) {
  const double t = std::ceil(static_cast<double>(p) * 16777216.0);
  return t <= 0 ? 0u : static_cast<std::uint32_t>(t < 16777216.0 ? t : 16777216.0);
}
TR_PHILOX_FN bool dropout_keeps(std::uint32_t word, std::uint32_t threshold) {
  return (word >> 8) >= threshold;
}

// out[i] = uniform float in [0, 1) at word position offset + i.
void philox_uniform_float(float* out, std::int64_t n, std::uint64_t seed, std::uint64_t stream,
                          std::uint64_t offset);
// out[i] = uniform double in [0, 1) at block position offset + i.
void philox_uniform(double* out, std::int64_t n, std::uint64_t seed, std::uint64_t stream,
                    std::uint64_t offset);
// out[i] = standard normal double at block position offset + i.
void philox_normal(double* out, std::int64_t n, std::uint64_t seed, std::uint64_t stream,
                   std::uint64_t offset);

}  // namespace tr::cpu
