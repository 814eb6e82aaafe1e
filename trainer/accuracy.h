// Argmax accuracy of logits [..., V] (on either device) against integer targets (either
// device), ignoring one target id.
#pragma once

#include <cstdint>

#include "layers/tensor.h"

namespace tr {

struct AccuracyCount {
  std::int64_t correct = 0;
  std::int64_t counted = 0;
  double rate() const { return counted ? static_cast<double>(correct) / counted : 0.0; }
};

AccuracyCount count_correct(const Tensor& logits, const Tensor& targets, std::int32_t ignore_index);

}  // namespace tr
