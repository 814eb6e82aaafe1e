#include "trainer/accuracy.h"

namespace tr {

namespace {
template <typename T>
AccuracyCount count(const T* logits, const std::int32_t* targets, std::int64_t N, std::int64_t V,
                    std::int32_t ignore_index) {
  AccuracyCount result;
  for (std::int64_t n = 0; n < N; ++n) {
    if (targets[n] == ignore_index) continue;
    const T* row = logits + n * V;
    std::int64_t best = 0;
    for (std::int64_t v = 1; v < V; ++v)
      if (row[v] > row[best]) best = v;
    ++result.counted;
    result.correct += best == targets[n];
  }
  return result;
}
}  // namespace

AccuracyCount count_correct(const Tensor& logits, const Tensor& targets,
                            std::int32_t ignore_index) {
  const std::int64_t V = logits.dim(-1), N = logits.numel() / V;
  TR_CHECK(targets.numel() == N, "accuracy: targets vs logits");
  if (logits.dtype() == DType::f64)
    return count(logits.data<double>(), targets.data<std::int32_t>(), N, V, ignore_index);
  return count(logits.data<float>(), targets.data<std::int32_t>(), N, V, ignore_index);
}

}  // namespace tr
