#include "layers/cpu/philox.h"

#include <cmath>

#include "layers/cpu/kernels.h"

namespace tr::cpu {

namespace {

// Calls fn(i, word) for every i in [0, n) with the 32-bit word at position offset + i. The loop
// runs over whole blocks so each Philox call is made once however the range is aligned.
template <typename Fn>
void for_each_word(i64 n, std::uint64_t seed, std::uint64_t stream, std::uint64_t offset, Fn fn) {
  if (n <= 0) return;
  const std::uint64_t first = offset >> 2;
  const std::uint64_t last = (offset + static_cast<std::uint64_t>(n) - 1) >> 2;
  const i64 blocks = static_cast<i64>(last - first + 1);
#pragma omp parallel for schedule(static) if (blocks > 4096)
  for (i64 b = 0; b < blocks; ++b) {
    const std::uint64_t block = first + static_cast<std::uint64_t>(b);
    const Philox4 r = philox_block(seed, stream, block);
    for (int lane = 0; lane < 4; ++lane) {
      const std::uint64_t pos = block * 4 + static_cast<std::uint64_t>(lane);
      // Unsigned wrap makes positions before offset huge, so one comparison bounds both ends.
      const std::uint64_t i = pos - offset;
      if (i < static_cast<std::uint64_t>(n)) fn(static_cast<i64>(i), r.v[lane]);
    }
  }
}

constexpr double k2Pow53 = 1.0 / 9007199254740992.0;

inline std::uint64_t join(std::uint32_t lo, std::uint32_t hi) {
  return (static_cast<std::uint64_t>(hi) << 32) | lo;
}

}  // namespace

void dropout_mask(std::uint8_t* keep, i64 n, float p, std::uint64_t seed, std::uint64_t stream,
                  std::uint64_t offset) {
  for_each_word(n, seed, stream, offset,
                [&](i64 i, std::uint32_t w) { keep[i] = philox_word_to_uniform(w) >= p ? 1 : 0; });
}

void philox_uniform_float(float* out, i64 n, std::uint64_t seed, std::uint64_t stream,
                          std::uint64_t offset) {
  for_each_word(n, seed, stream, offset,
                [&](i64 i, std::uint32_t w) { out[i] = philox_word_to_uniform(w); });
}

void philox_uniform(double* out, i64 n, std::uint64_t seed, std::uint64_t stream,
                    std::uint64_t offset) {
#pragma omp parallel for schedule(static) if (n > 4096)
  for (i64 i = 0; i < n; ++i) {
    const Philox4 r = philox_block(seed, stream, offset + static_cast<std::uint64_t>(i));
    out[i] = static_cast<double>(join(r.v[0], r.v[1]) >> 11) * k2Pow53;
  }
}

void philox_normal(double* out, i64 n, std::uint64_t seed, std::uint64_t stream,
                   std::uint64_t offset) {
  constexpr double kTwoPi = 6.283185307179586476925286766559;
#pragma omp parallel for schedule(static) if (n > 4096)
  for (i64 i = 0; i < n; ++i) {
    const Philox4 r = philox_block(seed, stream, offset + static_cast<std::uint64_t>(i));
    // u1 in (0, 1] keeps the logarithm finite.
    const double u1 = static_cast<double>((join(r.v[0], r.v[1]) >> 11) + 1) * k2Pow53;
    const double u2 = static_cast<double>(join(r.v[2], r.v[3]) >> 11) * k2Pow53;
    out[i] = std::sqrt(-2.0 * std::log(u1)) * std::cos(kTwoPi * u2);
  }
}

}  // namespace tr::cpu
