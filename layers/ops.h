// The dispatch layer: tensor-level operations that modules call. Each checks shapes, then
// dispatches on the tensor's device (CPU today; CUDA plugs in here with the same signatures)
// and dtype (f32 for training, f64 for gradient checks) to the raw kernels.
//
// Naming follows the kernels: outputs first; `_accumulate` adds into its output. Outputs are
// (re)shaped by the op with ensure_shape, so callers keep them as members and nothing is
// allocated once the shapes have been seen.
//
// bf16 activations (train.precision: bf16): the float operands of the ops below may be f32 or
// bf16 in any mix (parameters and their gradients are always f32 or f64). An output takes the
// dtype of the input it is shaped after (a gradient that of its forward tensor), the sum of an
// f32 and a bf16 tensor is f32 (the residual stream stays f32), and linear/LayerNorm outputs
// take the dtype the caller asks for. Statistics and internal buffers (LayerNorm mean/rstd,
// attention probabilities) are f32 for bf16 inputs. On the CPU a bf16 operand is widened to
// f32 for the f32 kernel and a bf16 output rounded from its f32 result (layers/widened.h).
#pragma once

#include <cstdint>

#include "layers/tensor.h"

namespace tr::ops {

// y[N, out] = x[N, in] W^T (+ b).   weight [out, in], bias [out] or undefined.
void linear_forward(Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& bias);
// The same with y of dtype y_dtype (f32 or bf16 for an f32/bf16 x).
void linear_forward(Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& bias,
                    DType y_dtype);
// y = relu(x W^T (+ b)), y of dtype y_dtype: a feed-forward layer's first product with its
// activation. On CUDA in the GEMM's own pass (cuBLASLt's RELU_BIAS epilogue); on the CPU the
// ReLU follows in place. Exact either way: ReLU commutes with rounding to bf16.
void linear_relu_forward(Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& bias,
                         DType y_dtype);
// y = gelu_tanh(x W^T (+ b)) and pre = x W^T (+ b), both of dtype y_dtype: a feed-forward layer's
// first product with its tanh GELU, keeping the pre-activation for backward. On CUDA in the
// GEMM's own pass (cuBLASLt's GELU_AUX_BIAS epilogue, whose GELU is this approximation, from the
// fp32 accumulator); on the CPU the GELU follows from pre.
void linear_gelu_tanh_forward(Tensor& y, Tensor& pre, const Tensor& x, const Tensor& weight,
                              const Tensor& bias, DType y_dtype);
// dx = dy W (skipped when dx is null), dweight += dy^T x, dbias += colsum(dy) (when defined).
void linear_backward(Tensor* dx, Tensor& dweight, Tensor* dbias, const Tensor& dy, const Tensor& x,
                     const Tensor& weight);
// As linear_backward with dx carried back through the tanh GELU whose output x is:
// dx = (dy W) * gelu_tanh'(gelu_input), gelu_input shaped like x (the layer before's `pre`). On
// CUDA in the input gradient's product (cuBLASLt's DGELU epilogue).
void linear_backward_through_gelu_tanh(Tensor& dx, Tensor& dweight, Tensor* dbias, const Tensor& dy,
                                       const Tensor& x, const Tensor& weight,
                                       const Tensor& gelu_input);
// As linear_backward, but dx_sum += dy W (dx_sum shaped like x): the GEMM accumulates in place
// (beta = 1), for inputs that feed several projections.
void linear_backward_accumulate(Tensor& dx_sum, Tensor& dweight, Tensor* dbias, const Tensor& dy,
                                const Tensor& x, const Tensor& weight);

void layernorm_forward(Tensor& y, Tensor& mean, Tensor& rstd, const Tensor& x, const Tensor& weight,
                       const Tensor& bias, double eps);
void layernorm_forward(Tensor& y, Tensor& mean, Tensor& rstd, const Tensor& x, const Tensor& weight,
                       const Tensor& bias, double eps, DType y_dtype);
// dx = d(input) (+ *residual when given: a pre-LN block's skip gradient added in the same pass).
void layernorm_backward(Tensor& dx, Tensor& dweight, Tensor& dbias, const Tensor& dy,
                        const Tensor& x, const Tensor& weight, const Tensor& mean,
                        const Tensor& rstd, const Tensor* residual = nullptr);

// gelu: the exact erf form; gelu_tanh: its tanh approximation (PyTorch's approximate='tanh').
enum class Activation { relu, gelu, gelu_tanh };
void activation_forward(Tensor& y, const Tensor& x, Activation act);
// y: the forward's output act(x), or undefined; with it the fp32 GELU backward skips
// re-evaluating erf (see cpu::gelu_backward).
void activation_backward(Tensor& dx, const Tensor& dy, const Tensor& x, Activation act,
                         const Tensor& y = Tensor());

void add(Tensor& out, const Tensor& a, const Tensor& b);
// y[..., c] += bias[c]
void bias_add_inplace(Tensor& y, const Tensor& bias);
void add_accumulate(Tensor& out, const Tensor& a);
void copy(Tensor& out, const Tensor& in);

// Attention on projections laid out [B, T, H*Dh]; kv_len: i32 [B] or undefined; keep_mask:
// u8 [B, H, Tq, Tk] or undefined (no dropout).
void attention_forward(Tensor& out, Tensor& probs, const Tensor& q, const Tensor& k,
                       const Tensor& v, const Tensor& kv_len, const Tensor& keep_mask,
                       double keep_scale, std::int64_t heads, bool causal, std::int64_t q_offset);
void attention_backward(Tensor& dq, Tensor& dk, Tensor& dv, Tensor& scratch, const Tensor& dout,
                        const Tensor& probs, const Tensor& q, const Tensor& k, const Tensor& v,
                        const Tensor& keep_mask, double keep_scale, std::int64_t heads);

// Attention that stores no probabilities (flash-style): out as attention_forward, and lse
// [B, H, Tq] (f32 for bf16 operands) = the log of each score row's softmax denominator; the
// backward recomputes the probabilities from q, k and lse (so it takes kv_len, causal and
// q_offset again). CPU: the reference kernels; CUDA: f32 or bf16 operands (one dtype for all),
// head width <= 128; bf16 through cuDNN's fused attention where it takes the call
// (cuda::cudnn_attention_*, layers/cuda/kernels.h), else the own flash kernels.
void flash_attention_forward(Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k,
                             const Tensor& v, const Tensor& kv_len, const Tensor& keep_mask,
                             double keep_scale, std::int64_t heads, bool causal,
                             std::int64_t q_offset);
void flash_attention_backward(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout,
                              const Tensor& out, const Tensor& lse, const Tensor& q,
                              const Tensor& k, const Tensor& v, const Tensor& kv_len,
                              const Tensor& keep_mask, double keep_scale, std::int64_t heads,
                              bool causal, std::int64_t q_offset);
// Attention dropout drawn inside cuDNN's fused kernels (train.attention_dropout: fused): the
// keep mask comes from cuDNN's Philox RNG keyed by `seed` (Bernoulli, `keep_probability`), is
// never stored, and is drawn again from the same seed by the backward. Only bf16 projections on
// CUDA that cuDNN takes, once its plans for the shape exist: the forward returns false, having
// done nothing, everywhere else (the CPU, fp32, no cuDNN, a shape's first call), and the caller
// then draws its own mask and calls flash_attention_forward. After a forward that returned
// true, the same call's backward must be flash_attention_backward_drawn_dropout.
bool flash_attention_forward_drawn_dropout(Tensor& out, Tensor& lse, const Tensor& q,
                                           const Tensor& k, const Tensor& v, const Tensor& kv_len,
                                           double keep_probability, std::uint64_t seed,
                                           std::int64_t heads, bool causal);
void flash_attention_backward_drawn_dropout(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout,
                                            const Tensor& out, const Tensor& lse, const Tensor& q,
                                            const Tensor& k, const Tensor& v, const Tensor& kv_len,
                                            double keep_probability, std::uint64_t seed,
                                            std::int64_t heads, bool causal);
// Whether attention layers try flash_attention_forward_drawn_dropout first (process-wide, like
// train.precision: the trainer sets it from train.attention_dropout and clears it after).
void set_fused_attention_dropout(bool on);
bool fused_attention_dropout();

// Whether MultiHeadAttention takes the flash path for these projections: on CUDA with q and k
// of one dtype (f32, or bf16 under train.precision: bf16) and heads of at most 128 columns,
// unless the environment has
// TR_FLASH_ATTENTION=0 (then the materialised kernels: for comparisons on a GPU host). On the CPU
// the materialised kernels are faster (OpenBLAS products over whole heads) and stay the training
// path unless set_flash_attention_on_cpu(true) (process-wide; the model tests run the flash path's
// module logic through the CPU twin with it, and it keeps no probabilities).
bool use_flash_attention(const Tensor& q, const Tensor& k, std::int64_t heads);
void set_flash_attention_on_cpu(bool on);

// out[..., d] = table[ids[...]] * scale; ids i32 of any shape, every id < rows of table.
void embedding_forward(Tensor& out, const Tensor& ids, const Tensor& table, double scale);
void embedding_backward_accumulate(Tensor& dtable, const Tensor& ids, const Tensor& dout,
                                   double scale);

// Vocabulary shard of a table (rows [first, first + rows) of the full one): ids outside it give
// zero rows forward and nothing backward.
void embedding_forward_shard(Tensor& out, const Tensor& ids, const Tensor& table, double scale,
                             std::int64_t first);
void embedding_backward_shard_accumulate(Tensor& dtable, const Tensor& ids, const Tensor& dout,
                                         double scale, std::int64_t first);

// The local passes of the vocabulary-parallel cross entropy (cpu::ce_shard_*): logits
// [..., V_local] of full columns [first, first + valid). row_max, sums, logsumexp: f64.
void ce_shard_max(Tensor& row_max, const Tensor& logits, std::int64_t valid);
void ce_shard_sums(Tensor& sums, const Tensor& logits, const Tensor& targets, const Tensor& row_max,
                   std::int64_t valid, std::int64_t first, std::int32_t ignore_index);
void ce_shard_backward(Tensor& dlogits, const Tensor& logits, const Tensor& logsumexp,
                       const Tensor& targets, std::int64_t valid, std::int64_t first,
                       std::int64_t vocab, double label_smoothing, std::int32_t ignore_index,
                       double scale);

// out i32 [rows] = the index of each row's largest element (the first of equal ones); x
// [..., V], V >= 1. Rows holding NaN: unspecified.
void argmax_rows(Tensor& out, const Tensor& x);

// Returns the summed loss over non-ignored rows; fills logsumexp [N].
double cross_entropy_forward(Tensor& logsumexp, const Tensor& logits, const Tensor& targets,
                             double label_smoothing, std::int32_t ignore_index);
void cross_entropy_backward(Tensor& dlogits, const Tensor& logits, const Tensor& logsumexp,
                            const Tensor& targets, double label_smoothing,
                            std::int32_t ignore_index, double scale);

// keep: u8 mask of `shape` from the counter-based RNG, row by row along the last dimension:
// the element at index (i_0, ..., i_{n-2}, k) is the draw at counter
// offset + sum_j i_j * strides[j] + k (one stride per leading dimension). Callers choose
// strides that do not depend on padding or sharding (layers/dropout.h). On `device` (CUDA:
// the same Philox counters, bit-identical masks; at most 4 leading dimensions).
void dropout_mask(Tensor& keep, const Shape& shape, double p, std::uint64_t seed,
                  std::uint64_t stream, std::uint64_t offset,
                  const std::vector<std::uint64_t>& strides, Device device = Device::cpu);
void dropout_apply(Tensor& out, const Tensor& in, const Tensor& keep, double p);
// out = skip + dropout(in): a residual branch's dropout and the skip add in one pass.
void dropout_add(Tensor& out, const Tensor& skip, const Tensor& in, const Tensor& keep, double p);

double sum_squares(const Tensor& x);

}  // namespace tr::ops
