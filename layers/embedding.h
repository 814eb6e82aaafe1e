// Token embedding table [V, d], looked up and multiplied by sqrt(d) (DESIGN section 4).
// Stateless in its inputs: the caller passes the ids to backward, so one table can serve
// the source, the target and (tied) the output projection in the same step.
#pragma once

#include <string>

#include "layers/parameter.h"

namespace tr {

class Embedding {
 public:
  Embedding(const std::string& name, std::int64_t vocab, std::int64_t d, DType dtype);
  void collect_parameters(ParameterList& out);
  // ids i32 [...] -> out [..., d] = table[ids] * sqrt(d)
  void forward(Tensor& out, const Tensor& ids) const;
  void backward_accumulate(const Tensor& ids, const Tensor& dout);
  double scale() const { return scale_; }

  Parameter weight;

 private:
  double scale_;
};

}  // namespace tr
