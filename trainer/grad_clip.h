// Gradient norm and clipping, as torch.nn.utils.clip_grad_norm_ (L2 norm over all gradients
// together, as if they were concatenated into one vector).
//
// Deterministic: each gradient's sum of squares is a fixed-order double reduction
// (cpu::sum_squares) and the per-parameter sums are added in list order, so the norm does not
// depend on the thread count.
//
// Distributed use. Under data parallelism the gradients are already averaged and identical on
// every DP rank; under tensor parallelism each rank holds a shard of some parameters and a
// replica of others. The global norm must count each element once. The functions below take
// an optional `reduce_sum_squares` that turns this rank's partial sum of squares into the
// global one (typically an all-reduce SUM over the TP group); clipping then scales the local
// gradients by the coefficient every rank agrees on. For a rank to contribute each element
// once, the caller passes, for the norm, the sharded parameters plus the replicated ones on
// one rank only, and for the scaling all local parameters: use grad_sum_squares,
// clip_coefficient and scale_grads for that split; clip_grad_norm is the common case where
// the two lists are the same.
#pragma once

#include <functional>

#include "layers/parameter.h"

namespace tr {

// Receives this rank's sum of squared gradient elements and returns the sum over all ranks.
// Empty means one process: the local sum is the global one.
using SumSquaresReducer = std::function<double(double)>;

// Sum over `params` of the squared gradient elements, in double, fixed order.
double grad_sum_squares(const ParameterList& params);

// sqrt(reduce_sum_squares(grad_sum_squares(params))).
double global_grad_norm(const ParameterList& params,
                        const SumSquaresReducer& reduce_sum_squares = {});

// torch's factor: max_norm / (total_norm + 1e-6), clamped to at most 1. Below 1 only when the
// norm exceeds max_norm (by more than the 1e-6 guard). NaN when total_norm is NaN.
double clip_coefficient(double total_norm, double max_norm);

// grad *= coefficient for every parameter (computed in the gradient's dtype).
void scale_grads(const ParameterList& params, double coefficient);

// Clips the gradients in place to a global L2 norm of at most max_norm (> 0) and returns the
// norm before clipping. Gradients are scaled only when the coefficient is below 1, so they
// stay bitwise unchanged otherwise (torch multiplies by the clamped 1.0, which is the same).
// A non-finite norm is returned as is for the caller to act on (skip the step); with an
// infinite norm the gradients are scaled by 0, as torch does, with a NaN norm they are left
// alone (torch would make them all NaN).
double clip_grad_norm(const ParameterList& params, double max_norm,
                      const SumSquaresReducer& reduce_sum_squares = {});

// The parameters whose squares a tensor-parallel rank contributes to the global norm: its
// shards (Parameter::sharded), and the replicated parameters on TP rank 0 only.
ParameterList tensor_parallel_norm_share(const ParameterList& params, int tp_rank);

// As clip_grad_norm, the norm taken over `norm_params` (then reduced) and the clipping applied
// to all `params`: the tensor-parallel split described above.
double clip_grad_norm_split(const ParameterList& params, const ParameterList& norm_params,
                            double max_norm, const SumSquaresReducer& reduce_sum_squares);

}  // namespace tr
