#include "layers/embedding.h"

#include <cmath>

#include "layers/ops.h"

namespace tr {

Embedding::Embedding(const std::string& name, std::int64_t vocab, std::int64_t d, DType dtype,
                     TensorParallel* tp)
    : scale_(std::sqrt(static_cast<double>(d))), tp_(active_tp(tp)) {
  if (tp_)
    init_sharded_parameter(weight, name + ".weight", {vocab, d}, 0, tp_->rank(), tp_->size(), dtype,
                           /*decay=*/true);
  else
    init_parameter(weight, name + ".weight", {vocab, d}, dtype, /*decay=*/true);
  // N(0, 1/d): after the sqrt(d) scaling, embeddings enter the model with unit variance.
  weight.init = {InitRule::Kind::normal, 1.0 / scale_};
}

void Embedding::collect_parameters(ParameterList& out) {
  out.push_back(&weight);
}

void Embedding::forward(Tensor& out, const Tensor& ids) const {
  if (!tp_) {
    ops::embedding_forward(out, ids, weight.value, scale_);
    return;
  }
  ops::embedding_forward_shard(out, ids, weight.value, scale_, weight.shard.offset);
  tp_->all_reduce_sum(out);
}

void Embedding::backward_accumulate(const Tensor& ids, const Tensor& dout) {
  if (!tp_) {
    ops::embedding_backward_accumulate(weight.grad, ids, dout, scale_);
    return;
  }
  ops::embedding_backward_shard_accumulate(weight.grad, ids, dout, scale_, weight.shard.offset);
}

}  // namespace tr
