#include "layers/tensor_parallel.h"

#include <algorithm>
#include <cstring>

namespace tr {

DimSplit split_dim(std::int64_t full, int rank, int ranks) {
  TR_CHECK(ranks >= 1 && rank >= 0 && rank < ranks, "split_dim: rank outside the group");
  DimSplit s;
  s.local = (full + ranks - 1) / ranks;
  s.offset = s.local * rank;
  s.extent = std::clamp<std::int64_t>(full - s.offset, 0, s.local);
  return s;
}

void gather_vocab_columns(Tensor& full, Tensor& scratch, const Tensor& local, TensorParallel& tp,
                          std::int64_t vocab) {
  const std::int64_t V_local = local.dim(-1), N = local.numel() / V_local;
  tp.all_gather(scratch, local);
  Shape shape = local.shape();
  shape.back() = vocab;
  ensure_shape(full, shape, local.dtype(), local.device());
  const std::size_t es = dtype_size(local.dtype());
  const auto* from = static_cast<const char*>(scratch.raw());
  auto* to = static_cast<char*>(full.raw());
  for (int r = 0; r < tp.size(); ++r) {
    const DimSplit s = split_dim(vocab, r, tp.size());
    TR_CHECK(s.local == V_local, "gather_vocab_columns: shard width");
    for (std::int64_t n = 0; n < N; ++n)
      std::memcpy(to + static_cast<std::size_t>(n * vocab + s.offset) * es,
                  from + static_cast<std::size_t>((r * N + n) * V_local) * es,
                  static_cast<std::size_t>(s.extent) * es);
  }
}

}  // namespace tr
