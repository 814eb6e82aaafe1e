#include "layers/cross_entropy.h"

#include "layers/ops.h"

namespace tr {

double CrossEntropy::forward(const Tensor& logits, const Tensor& targets) {
  logits_ = logits;
  targets_ = targets;
  const std::int32_t* t = targets.data<std::int32_t>();
  counted_ = 0;
  for (std::int64_t i = 0; i < targets.numel(); ++i) counted_ += (t[i] != ignore_index_);
  return ops::cross_entropy_forward(logsumexp_, logits, targets, smoothing_, ignore_index_);
}

Tensor CrossEntropy::backward(double scale) {
  ops::cross_entropy_backward(dlogits_, logits_, logsumexp_, targets_, smoothing_, ignore_index_,
                              scale);
  return dlogits_;
}

}  // namespace tr
