// Dropout with masks from a counter-based RNG (Philox).
//
// The keep decision for an element depends only on (seed, step, layer, global sample index,
// element index within the sample): never on threads, batch split, micro-batching or the
// TP x DP layout. So a run reproduces its masks under any layout and on resume.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "layers/tensor.h"

namespace tr {

// Activation recomputation (`train.recompute`, as Megatron-LM's granularities): what a
// training forward keeps for its backward.
//   none:      everything.
//   selective: all but each attention's probabilities and dropout mask ([B, H, Tq, Tk], the
//              largest activations of short-sequence models and the cheapest to recompute:
//              the backward recomputes them from the kept q and k).
//   full:      each transformer layer keeps only its input; its backward reruns its forward.
// The recomputed values are bitwise those of the forward (deterministic kernels, dropout
// masks keyed by position), so gradients do not depend on the mode. Activations given back
// return to the buffer pool, where the next layer's forward takes them: peak memory falls.
enum class Recompute { none, selective, full };
// "none", "selective" or "full" (train.recompute's values); nullopt for anything else.
std::optional<Recompute> recompute_from_name(std::string_view name);

// What a forward pass needs to know besides its inputs.
struct ForwardContext {
  bool training = false;                  // dropout active
  std::uint64_t seed = 0;                 // run.seed
  std::uint64_t step = 0;                 // optimizer step (1-based)
  std::int64_t sample_offset = 0;         // global index of this micro-batch's first sample
  Recompute recompute = Recompute::none;  // read only when training
  // The second forward of a full recomputation (in backward): where the first forward's path
  // depended on process state that may have changed since (a cuDNN plan made in between), it
  // takes the first forward's path again, so that both see the same dropout masks.
  bool replay = false;
};

// Stream id of (step, layer): distinct for every pair, so masks never repeat across layers/steps.
std::uint64_t dropout_stream(std::uint64_t step, std::uint64_t layer_id);

// Counters of the keep decisions. Element (b, a, r, k) of a mask read as [B, A, R, K] (samples,
// attention heads or 1, rows: positions, and the last dimension) is the draw at
//   (sample_offset + b) * 2^40 + a * 2^32 + r * 2^16 + k,
// fixed strides rather than the tensor's own: a sequence's mask does not depend on how long
// the batch it was padded into is (micro-batch composition, DP split), and a TP rank's heads
// draw exactly their part of the whole layer's mask. Limits: A < 256, R and K < 65536.
constexpr int kDropoutSampleShift = 40, kDropoutHeadShift = 32, kDropoutRowShift = 16;

// The keep mask for a [B, ..., K] tensor (rows: the product of the middle dimensions).
// On `device` (where the tensor it masks lives).
void make_dropout_mask(Tensor& keep, const Shape& shape, double p, const ForwardContext& ctx,
                       std::uint64_t layer_id, Device device = Device::cpu);
// The keep mask for attention probabilities [B, H, Tq, Tk] of heads
// [first_head, first_head + H) of the layer.
void make_attention_dropout_mask(Tensor& keep, const Shape& shape, double p,
                                 const ForwardContext& ctx, std::uint64_t layer_id,
                                 std::int64_t first_head, Device device = Device::cpu);

// The seed of an attention's dropout drawn inside cuDNN's fused kernels
// (train.attention_dropout: fused; ops::flash_attention_forward_drawn_dropout), one per (run
// seed, step, layer, first global sample of the micro-batch, first head of the rank): layers,
// steps, micro-batches, DP replicas and TP ranks draw different masks, and a recomputed forward
// the same. Unlike the keyed masks above, what cuDNN draws from a seed depends on the call's
// shape: those masks differ from the CPU's and from one layout to another.
std::uint64_t attention_dropout_seed(const ForwardContext& ctx, std::uint64_t layer_id,
                                     std::int64_t first_head);

class Dropout {
 public:
  Dropout(double p, std::uint64_t layer_id) : p_(p), layer_id_(layer_id) {}
  // Returns x itself when inactive (p == 0 or not training).
  Tensor forward(const Tensor& x, const ForwardContext& ctx);
  // out = skip + forward(x, ctx), in one pass when active (residual branches).
  void forward_add(Tensor& out, const Tensor& skip, const Tensor& x, const ForwardContext& ctx);
  Tensor backward(const Tensor& dy);
  double p() const { return p_; }
  // Drops the kept activations and gradient buffers (their blocks go back to the pool).
  void release_activations() { keep_ = y_ = dx_ = Tensor(); }

 private:
  double p_;
  std::uint64_t layer_id_;
  bool active_ = false;
  Tensor keep_, y_, dx_;
};

}  // namespace tr
