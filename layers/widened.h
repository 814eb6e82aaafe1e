// Ops on bf16 tensors without a bf16 kernel: the op runs its f32 kernel on widened copies of
// its bf16 inputs (exact), and its bf16 outputs receive the f32 results rounded to nearest
// even. Every CPU op does so; on a GPU the ops other than the linear products (whose GEMMs
// read and write bf16 themselves), with device copies. A kernel that loads bf16, computes in
// fp32 and stores bf16 rounds at the same points, so it could replace this op by op.
#pragma once

#include <deque>
#include <utility>
#include <vector>

#include "layers/tensor.h"

namespace tr {

class Widened {
 public:
  Widened() = default;
  Widened(const Widened&) = delete;
  Widened& operator=(const Widened&) = delete;

  // `t` itself unless it is bf16; then an f32 copy of it.
  const Tensor& in(const Tensor& t);
  // An output already shaped with its final dtype: `t` itself unless it is bf16; then an f32
  // stand-in, holding t's values when `accumulating` (the op adds into it), which finish()
  // rounds into t.
  Tensor& out(Tensor& t, bool accumulating = false);
  // Rounds every stand-in into its bf16 output. Call once, after the kernel.
  void finish();

 private:
  std::deque<Tensor> copies_;  // a deque: references handed out stay valid as it grows
  std::vector<std::pair<Tensor*, const Tensor*>> outputs_;  // (bf16 output, f32 stand-in)
};

// The dtype of an elementwise result of a and b: theirs when equal, f64 when either is f64
// (fp64 checks), else f32 (an f32 operand, such as the residual stream, keeps the sum f32).
DType promoted_dtype(const Tensor& a, const Tensor& b);

}  // namespace tr
