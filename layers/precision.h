// Whether the transformer blocks keep their activations in bf16 (train.precision: bf16 on a
// device whose kernels take bf16 operands: the CPU's, through layers/widened.h).
//
// What is bf16 then: the tensors inside a block that its backward keeps or that feed a
// matrix product: the pre-LN sublayer norms' outputs, the query/key/value projections, the
// attention context, the feed-forward hidden layer and its activation, and the outputs of
// the output projections (o_proj, fc2) when they are not row-parallel (a row-parallel
// layer's partial sums are all-reduced in fp32). The residual stream, embeddings, final
// norms, logits, LayerNorm statistics, attention probabilities, parameters, their gradients
// and the optimizer state stay fp32; gradients of bf16 activations are bf16.
// Process-wide: a process trains one configuration.
#pragma once

#include "layers/tensor.h"

namespace tr {

void set_bf16_activations(bool on);
bool bf16_activations();

// The dtype of a block activation computed from an input of dtype `input`: bf16 when bf16
// activations are on and the input is f32 or bf16; f64 stays f64 (gradient checks).
DType block_activation_dtype(DType input);

// The dtype a tensor of `dtype` is computed in: f32 for bf16 (statistics, internal buffers,
// and a layer's f32 outputs from bf16 inputs), any other dtype itself.
DType wide_dtype(DType dtype);

}  // namespace tr
