// Token or class cross entropy with label smoothing (as PyTorch) and an ignored target id.
// forward returns the loss SUM over counted rows; the caller divides by the global count, so a
// step's loss is independent of how the batch is split over micro-batches and ranks.
#pragma once

#include <cstdint>

#include "layers/tensor.h"

namespace tr {

class CrossEntropy {
 public:
  CrossEntropy(double label_smoothing, std::int32_t ignore_index)
      : smoothing_(label_smoothing), ignore_index_(ignore_index) {}
  // logits [..., V], targets i32 [...]; returns sum of per-row losses over non-ignored rows.
  double forward(const Tensor& logits, const Tensor& targets);
  // dlogits = scale * d(sum loss)/d logits; scale is 1 / (global count of counted rows).
  Tensor backward(double scale);
  std::int64_t counted_rows() const { return counted_; }  // rows with target != ignore_index

 private:
  double smoothing_;
  std::int32_t ignore_index_;
  std::int64_t counted_ = 0;
  Tensor logits_, targets_, logsumexp_, dlogits_;
};

}  // namespace tr
