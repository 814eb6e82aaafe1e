// Tensor parallelism (Megatron-LM) as the modules of layers/ see it: which of `size` shards a
// module holds, and the few collectives over its tensor-parallel group that sharded modules
// need. layers/ knows no MPI: parallel/tensor_parallel_group.h implements this interface over
// a Communicator. A module given no group (nullptr), or a group of one, is the whole module and
// runs exactly the single-process code.
//
// Megatron's conjugate operators are the two places a TP block communicates:
//   f, at a block's replicated input: identity forward, all-reduce of the input gradient
//      backward (each rank's projections of the input give a partial sum of its gradient);
//   g, at a block's output: all-reduce of the partial products forward, identity backward.
// Both are the one call tp_all_reduce, made by the module where the sum is complete.
#pragma once

#include <cstdint>

#include "layers/tensor.h"

namespace tr {

class TensorParallel {
 public:
  virtual ~TensorParallel() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // In place over the group; every rank receives the same result. f32, f64 tensors.
  virtual void all_reduce_sum(Tensor& t) = 0;
  virtual void all_reduce_max(Tensor& t) = 0;
  // out (reshaped to [size, local.shape...]) = the `local` tensors of ranks 0..size-1.
  virtual void all_gather(Tensor& out, const Tensor& local) = 0;
};

inline int tp_size(const TensorParallel* tp) {
  return tp ? tp->size() : 1;
}
inline int tp_rank(const TensorParallel* tp) {
  return tp ? tp->rank() : 0;
}
// The group when it has more than one rank, else null: modules test this to choose between
// the sharded and the single-process code.
inline TensorParallel* active_tp(TensorParallel* tp) {
  return tp && tp->size() > 1 ? tp : nullptr;
}

// Sum of `t` over the group (f backward, g forward); nothing without an active group.
inline void tp_all_reduce(TensorParallel* tp, Tensor& t) {
  if (tp && tp->size() > 1) tp->all_reduce_sum(t);
}

// One rank's part of a dimension of `full` indices split over `ranks`: local size
// ceil(full / ranks) (the dimension is padded to local * ranks when ranks do not divide it),
// starting at full index `offset`; the first `extent` local indices exist in the full
// dimension, the rest are padding.
struct DimSplit {
  std::int64_t local = 0, offset = 0, extent = 0;
};
DimSplit split_dim(std::int64_t full, int rank, int ranks);

// full [..., vocab] = the vocabulary-sharded local [..., V_local] of every rank side by side,
// padding columns dropped (inference: decoding and evaluation need whole distributions).
// scratch receives the raw all-gather.
void gather_vocab_columns(Tensor& full, Tensor& scratch, const Tensor& local, TensorParallel& tp,
                          std::int64_t vocab);

}  // namespace tr
