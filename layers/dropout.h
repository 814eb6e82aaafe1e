// Dropout with masks from a counter-based RNG (Philox).
//
// The keep decision for an element depends only on (seed, step, layer, global sample index,
// element index within the sample): never on threads, batch split, micro-batching or the
// TP x DP layout. So a run reproduces its masks under any layout and on resume.
#pragma once

#include <cstdint>

#include "layers/tensor.h"

namespace tr {

// What a forward pass needs to know besides its inputs.
struct ForwardContext {
  bool training = false;           // dropout active
  std::uint64_t seed = 0;          // run.seed
  std::uint64_t step = 0;          // optimizer step (1-based)
  std::int64_t sample_offset = 0;  // global index of this micro-batch's first sample
};

// Stream id of (step, layer): distinct for every pair, so masks never repeat across layers/steps.
std::uint64_t dropout_stream(std::uint64_t step, std::uint64_t layer_id);

// Makes the keep mask for a [B, ...] tensor: sample b's element e uses counter
// (sample_offset + b) * per_sample + e.
void make_dropout_mask(Tensor& keep, const Shape& shape, double p, const ForwardContext& ctx,
                       std::uint64_t layer_id);
// The mask of a tensor-parallel rank's slice of a [B, ...] tensor whose samples hold
// `full_per_sample` elements: the rank holds elements [first, first + n) of each sample
// (n = its per-sample size) and gets exactly those elements of the whole tensor's mask, so
// sharded activations (a rank's attention heads) have masks independent across ranks and
// equal to the single-process run's.
void make_dropout_mask_slice(Tensor& keep, const Shape& shape, double p, const ForwardContext& ctx,
                             std::uint64_t layer_id, std::int64_t full_per_sample,
                             std::int64_t first);

class Dropout {
 public:
  Dropout(double p, std::uint64_t layer_id) : p_(p), layer_id_(layer_id) {}
  // Returns x itself when inactive (p == 0 or not training).
  Tensor forward(const Tensor& x, const ForwardContext& ctx);
  // out = skip + forward(x, ctx), in one pass when active (residual branches).
  void forward_add(Tensor& out, const Tensor& skip, const Tensor& x, const ForwardContext& ctx);
  Tensor backward(const Tensor& dy);
  double p() const { return p_; }

 private:
  double p_;
  std::uint64_t layer_id_;
  bool active_ = false;
  Tensor keep_, y_, dx_;
};

}  // namespace tr
