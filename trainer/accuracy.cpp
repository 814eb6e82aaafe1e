#include "trainer/accuracy.h"

#include "layers/device.h"
#include "layers/ops.h"

namespace tr {

AccuracyCount count_correct(const Tensor& logits, const Tensor& targets,
                            std::int32_t ignore_index) {
  const std::int64_t V = logits.dim(-1), N = logits.numel() / V;
  TR_CHECK(targets.numel() == N, "accuracy: targets vs logits");
  // The argmax where the logits are (a GPU's rows stay there); the N indices are compared here.
  Tensor best;
  ops::argmax_rows(best, logits);
  const Tensor best_host = to_device(best, Device::cpu);
  const Tensor targets_host = to_device(targets, Device::cpu);
  const std::int32_t* b = best_host.data<std::int32_t>();
  const std::int32_t* t = targets_host.data<std::int32_t>();
  AccuracyCount result;
  for (std::int64_t n = 0; n < N; ++n) {
    if (t[n] == ignore_index) continue;
    ++result.counted;
    result.correct += b[n] == t[n];
  }
  return result;
}

}  // namespace tr
