// Token embedding table [V, d], looked up and multiplied by sqrt(d) (DESIGN section 4).
// Stateless in its inputs: the caller passes the ids to backward, so one table can serve
// the source, the target and (tied) the output projection in the same step.
//
// Vocabulary-parallel (Megatron-LM): each tensor-parallel rank holds a slice of the rows. The
// vocabulary is padded to a multiple of the group size, so rank r holds rows
// [r * Vp / tp, (r + 1) * Vp / tp) of the padded table; padding rows are zero, never looked up
// and never trained. A lookup gives zero rows for ids outside the rank's slice and sums the
// rows over the group; backward updates only the rank's own rows.
#pragma once

#include <string>

#include "layers/parameter.h"
#include "layers/tensor_parallel.h"

namespace tr {

class Embedding {
 public:
  Embedding(const std::string& name, std::int64_t vocab, std::int64_t d, DType dtype,
            TensorParallel* tp = nullptr);
  void collect_parameters(ParameterList& out);
  // ids i32 [...] -> out [..., d] = table[ids] * sqrt(d)
  void forward(Tensor& out, const Tensor& ids) const;
  void backward_accumulate(const Tensor& ids, const Tensor& dout);
  double scale() const { return scale_; }
  TensorParallel* tensor_parallel() const { return tp_; }

  Parameter weight;

 private:
  double scale_;
  TensorParallel* tp_;  // null without tensor parallelism
};

}  // namespace tr
