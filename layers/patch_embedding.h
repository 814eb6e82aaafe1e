// PatchEmbedding: cuts images [B, C, H, W] into non-overlapping P x P patches, flattens each in
// (channel, row, col) order and projects it: {name}.weight [d, C*P*P] (a conv weight
// [d, C, P, P] reshaped), {name}.bias [d]. Output [B, (H/P)*(W/P), d], patches in row-major
// order of the patch grid.
#pragma once

#include <string>

#include "layers/linear.h"

namespace tr {

class PatchEmbedding {
 public:
  PatchEmbedding(const std::string& name, std::int64_t channels, std::int64_t patch, std::int64_t d,
                 DType dtype);
  void collect_parameters(ParameterList& out);
  Tensor forward(const Tensor& images);
  // Images are inputs, not learned: only the projection's gradients are accumulated.
  void backward(const Tensor& dy);

  Linear proj;

 private:
  std::int64_t channels_, patch_;
  Tensor patches_;
};

}  // namespace tr
