// Token or class cross entropy with label smoothing (as PyTorch) and an ignored target id.
// forward returns the loss SUM over counted rows; the caller divides by the global count, so a
// step's loss is independent of how the batch is split over micro-batches and ranks.
//
// Vocabulary-parallel (Megatron-LM), when constructed with a VocabShard: each tensor-parallel
// rank holds the logits of its slice of the vocabulary and the full-vocabulary logits are never
// gathered. Per row, the group all-reduces the maximum, then (in one call) the sum of
// exp(x - max), the target's logit (from the rank that holds it) and the sum of the logits (the
// smoothing term); every rank then has the row's loss, and backward is local. Padding columns
// (a vocabulary the group does not divide) get no probability and no gradient.
#pragma once

#include <cstdint>

#include "layers/tensor.h"
#include "layers/tensor_parallel.h"

namespace tr {

// The vocabulary columns a rank's logits hold: full columns [first, first + valid) of a
// vocabulary of `vocab`; local columns from `valid` on are padding.
struct VocabShard {
  TensorParallel* tp = nullptr;
  std::int64_t vocab = 0, first = 0, valid = 0;
};

class CrossEntropy {
 public:
  CrossEntropy(double label_smoothing, std::int32_t ignore_index, VocabShard shard = {})
      : smoothing_(label_smoothing), ignore_index_(ignore_index), shard_(shard) {}
  // logits [..., V] (sharded: [..., V_local]), targets i32 [...] (full vocabulary ids); returns
  // the sum of per-row losses over non-ignored rows. host_targets: the same targets on the host
  // when `targets` lives on a device (counting them then reads nothing back); undefined: the
  // targets are copied to the host.
  double forward(const Tensor& logits, const Tensor& targets,
                 const Tensor& host_targets = Tensor());
  // dlogits = scale * d(sum loss)/d logits; scale is 1 / (global count of counted rows).
  // overwrite_logits: computed into the forward's logits tensor (the caller is done with it).
  Tensor backward(double scale, bool overwrite_logits = false);
  std::int64_t counted_rows() const { return counted_; }  // rows with target != ignore_index

 private:
  double forward_sharded(const Tensor& logits, const Tensor& targets, const Tensor& host_targets);
  double smoothing_;
  std::int32_t ignore_index_;
  VocabShard shard_;
  std::int64_t counted_ = 0;
  Tensor logits_, targets_, logsumexp_, dlogits_, row_max_, sums_;
  Tensor lse_host_;  // the sharded log-sum-exp computed on the host for CUDA logits
};

}  // namespace tr
