#include "data/permutation.h"

#include <algorithm>
#include <numeric>
#include <utility>

#include "layers/cpu/philox.h"

namespace tr {

std::vector<std::int64_t> seeded_permutation(std::int64_t n, std::uint64_t seed,
                                             std::uint64_t stream) {
  std::vector<std::int64_t> order(static_cast<std::size_t>(std::max<std::int64_t>(n, 0)));
  std::iota(order.begin(), order.end(), std::int64_t{0});
  // Draws in blocks small enough that philox_uniform stays on this thread (it parallelises
  // larger draws with OpenMP, which a prefetch thread should not start).
  constexpr std::int64_t kBlock = 4096;
  double u[kBlock];
  for (std::int64_t done = 0; done < n - 1; done += kBlock) {
    const std::int64_t count = std::min(kBlock, n - 1 - done);
    cpu::philox_uniform(u, count, seed, stream, static_cast<std::uint64_t>(done));
    for (std::int64_t k = 0; k < count; ++k) {
      const std::int64_t i = n - 1 - (done + k);
      // u < 1, but u * (i + 1) may round up to i + 1 for large i.
      const auto j = std::min(static_cast<std::int64_t>(u[k] * static_cast<double>(i + 1)), i);
      std::swap(order[static_cast<std::size_t>(i)], order[static_cast<std::size_t>(j)]);
    }
  }
  return order;
}

}  // namespace tr
