#include "layers/cpu/philox.h"

#include <algorithm>
#include <cmath>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "layers/cpu/kernels.h"
#include "layers/cpu/simd.h"

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

constexpr int kChunkBlocks = 8;  // Philox blocks per vector chunk (32 words)

// Words of blocks block0 .. block0 + 7: w[lane][l] is word `lane` of block block0 + l.
void philox_chunk_base(std::uint32_t w[4][kChunkBlocks], std::uint64_t seed, std::uint64_t stream,
                       std::uint64_t block0) {
  for (int l = 0; l < kChunkBlocks; ++l) {
    const Philox4 r = philox_block(seed, stream, block0 + static_cast<std::uint64_t>(l));
    for (int lane = 0; lane < 4; ++lane) w[lane][l] = r.v[lane];
  }
}

#if TR_HAVE_ISA_DISPATCH
// 32x32 -> 64-bit products of all eight lanes: low halves and high halves.
TR_TARGET_AVX2 TR_INLINE void mul_lo_hi(__m256i a, __m256i m, __m256i& plo, __m256i& phi) {
  const __m256i even = _mm256_mul_epu32(a, m);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
  plo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
  phi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}

// The same eight blocks in AVX2 registers, one block per 32-bit lane (bitwise identical).
TR_TARGET_AVX2 void philox_chunk_avx2(std::uint32_t w[4][kChunkBlocks], std::uint64_t seed,
                                      std::uint64_t stream, std::uint64_t block0) {
  alignas(32) std::uint32_t lo[kChunkBlocks], hi[kChunkBlocks];
  for (int l = 0; l < kChunkBlocks; ++l) {
    const std::uint64_t b = block0 + static_cast<std::uint64_t>(l);
    lo[l] = static_cast<std::uint32_t>(b);
    hi[l] = static_cast<std::uint32_t>(b >> 32);
  }
  __m256i c0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(lo));
  __m256i c1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(hi));
  __m256i c2 = _mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(stream)));
  __m256i c3 = _mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(stream >> 32)));
  std::uint32_t k0 = static_cast<std::uint32_t>(seed), k1 = static_cast<std::uint32_t>(seed >> 32);
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(0xD2511F53u));
  const __m256i m1 = _mm256_set1_epi32(static_cast<int>(0xCD9E8D57u));
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    __m256i lo0, hi0, lo1, hi1;
    mul_lo_hi(c0, m0, lo0, hi0);
    mul_lo_hi(c2, m1, lo1, hi1);
    const __m256i n0 =
        _mm256_xor_si256(_mm256_xor_si256(hi1, c1), _mm256_set1_epi32(static_cast<int>(k0)));
    const __m256i n2 =
        _mm256_xor_si256(_mm256_xor_si256(hi0, c3), _mm256_set1_epi32(static_cast<int>(k1)));
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(w[0]), c0);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(w[1]), c1);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(w[2]), c2);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(w[3]), c3);
}
#endif

}  // namespace

void dropout_mask(std::uint8_t* keep, i64 n, float p, std::uint64_t seed, std::uint64_t stream,
                  std::uint64_t offset) {
  if (n <= 0) return;
  const std::uint32_t thr = dropout_keep_threshold(p);
  const std::uint64_t first = offset >> 2;
  const std::uint64_t last = (offset + static_cast<std::uint64_t>(n) - 1) >> 2;
  const i64 chunks = static_cast<i64>((last - first) / kChunkBlocks + 1);
  using ChunkFn =
      void (*)(std::uint32_t[4][kChunkBlocks], std::uint64_t, std::uint64_t, std::uint64_t);
#if TR_HAVE_ISA_DISPATCH
  const ChunkFn chunk_fn = cpu_has_avx2_fma() ? &philox_chunk_avx2 : &philox_chunk_base;
#else
  const ChunkFn chunk_fn = &philox_chunk_base;
#endif
#pragma omp parallel for schedule(static) if (chunks > 1024)
  for (i64 c = 0; c < chunks; ++c) {
    const std::uint64_t block0 = first + static_cast<std::uint64_t>(c) * kChunkBlocks;
    std::uint32_t w[4][kChunkBlocks];
    chunk_fn(w, seed, stream, block0);
    const std::uint64_t pos0 = block0 * 4;  // position of word 0 of block0
    if (pos0 >= offset && pos0 - offset + 4 * kChunkBlocks <= static_cast<std::uint64_t>(n)) {
      std::uint8_t* out = keep + (pos0 - offset);
      for (int l = 0; l < kChunkBlocks; ++l)
        for (int lane = 0; lane < 4; ++lane) out[4 * l + lane] = dropout_keeps(w[lane][l], thr);
    } else {
      for (int l = 0; l < kChunkBlocks; ++l)
        for (int lane = 0; lane < 4; ++lane) {
          // Unsigned wrap makes positions before offset huge: one comparison bounds both ends.
          const std::uint64_t i = pos0 + static_cast<std::uint64_t>(4 * l + lane) - offset;
          if (i < static_cast<std::uint64_t>(n)) keep[i] = dropout_keeps(w[lane][l], thr);
        }
    }
  }
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
