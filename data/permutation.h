// Seeded permutations that are the same on every platform and standard library.
#pragma once

#include <cstdint>
#include <vector>

namespace tr {

// A permutation of [0, n) that depends only on (n, seed, stream): Fisher-Yates (Durstenfeld)
// from the last position down, position i swapped with j = floor(u * (i + 1)), where u is
// cpu::philox_uniform at (seed, stream, offset n - 1 - i). std::shuffle is avoided on purpose:
// its result differs between standard libraries, and runs must be comparable across machines.
std::vector<std::int64_t> seeded_permutation(std::int64_t n, std::uint64_t seed,
                                             std::uint64_t stream);

}  // namespace tr
