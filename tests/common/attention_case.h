// Attention test cases shared by the attention kernel tests (CPU twins, emulated kernels, GPU):
// the shape and masks of one case, how it prints, and its dropout keep mask.
#pragma once

#include <cstdint>
#include <ostream>
#include <random>
#include <vector>

namespace tr::testing {

struct AttentionCase {
  std::int64_t B, H, Tq, Tk, Dh;
  std::vector<std::int32_t> kv_len;  // empty: every key exists
  bool causal;
  std::int64_t q_offset;
  double dropout;  // 0: no keep mask
};

inline void PrintTo(const AttentionCase& c, std::ostream* os) {
  *os << "B" << c.B << " H" << c.H << " Tq" << c.Tq << " Tk" << c.Tk << " Dh" << c.Dh
      << (c.kv_len.empty() ? "" : " padded") << (c.causal ? " causal" : "") << " offset "
      << c.q_offset << " dropout " << c.dropout;
}

// The keep mask u8 [B, H, Tq, Tk] of a case with dropout (empty without), drawn from `seed`.
inline std::vector<std::uint8_t> attention_keep_mask(const AttentionCase& c,
                                                     std::uint32_t seed = 7) {
  std::vector<std::uint8_t> keep;
  if (c.dropout <= 0) return keep;
  std::mt19937 rng(seed);
  std::bernoulli_distribution kept(1.0 - c.dropout);
  keep.resize(static_cast<std::size_t>(c.B * c.H * c.Tq * c.Tk));
  for (auto& x : keep) x = kept(rng);
  return keep;
}

inline double attention_keep_scale(const AttentionCase& c) {
  return c.dropout > 0 ? 1.0 / (1.0 - c.dropout) : 1.0;
}

}  // namespace tr::testing
