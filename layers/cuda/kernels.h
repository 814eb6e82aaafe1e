// CUDA kernels: the CPU set of layers/cpu/kernels.h with the same signatures and meaning, on
// device pointers, fp32 (T = float); bf16 where noted. Host functions that launch on the
// process's compute stream (the legacy default stream for now) and return without waiting,
// except those returning a value to the host (a logged value: they synchronise).
//
// Every kernel here is checked against its CPU twin on the same inputs by tests/gpu/.
// Reductions have a fixed order (no atomics), so results are reproducible run to run.
#pragma once

#include <cstdint>
#include <string>

namespace tr::cuda {

using i64 = std::int64_t;

// bf16 storage: the bits of a bfloat16 (the upper half of a float), converted with
// round-to-nearest-even. A plain integer type keeps this header free of CUDA headers.
using bf16 = std::uint16_t;
void f32_to_bf16(bf16* out, const float* in, i64 n);
void bf16_to_f32(float* out, const bf16* in, i64 n);

// ---- GEMM (cuBLASLt) ------------------------------------------------------------------
// Mixed precision (train.precision: bf16): when on, every fp32 product below (gemm, gemm_bias,
// gemm_strided_batched: linear layers and attention) rounds A and B to bf16 and multiplies on
// the tensor cores with fp32 accumulation into the fp32 C. Process-wide; off by default.
void set_bf16_matmuls(bool on);
bool bf16_matmuls();
// As cpu::gemm: C[M,N] = alpha * op(A) op(B) + beta * C, row-major with leading dimensions.
void gemm(bool trans_a, bool trans_b, i64 M, i64 N, i64 K, float alpha, const float* A, i64 lda,
          const float* B, i64 ldb, float beta, float* C, i64 ldc);
// `batch` independent gemm's, the i-th on A + i stride_a, B + i stride_b, C + i stride_c.
void gemm_strided_batched(bool trans_a, bool trans_b, i64 M, i64 N, i64 K, float alpha,
                          const float* A, i64 lda, i64 stride_a, const float* B, i64 ldb,
                          i64 stride_b, float beta, float* C, i64 ldc, i64 stride_c, i64 batch);
// As gemm_strided_batched with operands already in bf16 (fp32 accumulation and C): the
// attention's products under bf16, whose kernels write their operands in bf16 directly.
void gemm_strided_batched_bf16_in(bool trans_a, bool trans_b, i64 M, i64 N, i64 K, float alpha,
                                  const bf16* A, i64 lda, i64 stride_a, const bf16* B, i64 ldb,
                                  i64 stride_b, float beta, float* C, i64 ldc, i64 stride_c,
                                  i64 batch);
// A linear layer's backward products, w [out, in]: dx = dy w (beta_dx 0 sets, 1 adds; dx may
// be null), dweight += dy^T x and, with dbias (may be null), dbias += the column sums of dy,
// summed by the weight gradient's product itself (cuBLASLt's BGRADB epilogue) where cuBLASLt
// offers it, else by bias_backward_accumulate. Under bf16 products dy is rounded once for all.
// With gelu_input (beta_dx 0), dx = (dy w) * gelu_tanh'(gelu_input): the input gradient of the
// layer after a tanh GELU carried through it in the product's pass (cuBLASLt's DGELU epilogue;
// gelu_tanh_backward after where cuBLASLt offers no algorithm with it).
void linear_backward_products(float* dx, float beta_dx, float* dweight, float* dbias,
                              const float* dy, const float* x, const float* w, i64 N, i64 in,
                              i64 out, const float* gelu_input = nullptr);
// bf16 activations (layers/precision.h): a linear layer's operands and outputs may be f32 or
// bf16, the weight and its gradient f32. bf16 ones need bf16 products (set_bf16_matmuls): f32
// operands are rounded into scratch, bf16 ones read in place, outputs written in their type
// (a bf16 y gets the bias rounded to bf16: cuBLASLt's epilogue adds a bias of the output's
// type). With every operand f32 these are the f32 products above.
struct Operand {
  const void* data = nullptr;
  bool bf16 = false;
};
struct Output {
  void* data = nullptr;  // null: not computed (linear_backward_mixed's dx)
  bool bf16 = false;
};
// y[N, out] = x[N, in] w^T (+ bias[out]), then max(y, 0) when `relu` (cuBLASLt's RELU_BIAS
// epilogue, in the GEMM's pass; where cuBLASLt offers no algorithm with it, relu_forward after).
void linear_forward_mixed(Output y, Operand x, const float* w, const float* bias, i64 N, i64 in,
                          i64 out, bool relu = false);
// y = gelu_tanh(x w^T + bias) and pre_activation = x w^T + bias (y's type), in the GEMM's pass
// under bf16 products (cuBLASLt's GELU_AUX_BIAS epilogue; cuBLASLt's GELU is the tanh
// approximation). fp32 products, or where cuBLASLt offers no algorithm with it (or `out` is not
// a multiple of 8, the pre-activation's leading dimension it requires): the product into
// pre_activation, then gelu_tanh_forward.
void linear_gelu_tanh_forward_mixed(Output y, Output pre_activation, Operand x, const float* w,
                                    const float* bias, i64 N, i64 in, i64 out);
// dx = dy w (+ beta_dx dx), dweight += dy^T x, dbias (may be null) += the column sums of dy
// (as linear_backward_products, gelu_input included: in dx's type).
void linear_backward_mixed(Output dx, float beta_dx, float* dweight, float* dbias, Operand dy,
                           Operand x, const float* w, i64 N, i64 in, i64 out,
                           Operand gelu_input = {});
// Off: the bias gradient by bias_backward_accumulate after the product, never the epilogue (on
// by default; for benchmarks and tests comparing the two, process-wide).
void set_bias_gradient_epilogue(bool on);
bool bias_gradient_epilogue();
// How many bias gradients asked of the epilogue came from the column-sum kernel instead,
// cuBLASLt offering no algorithm with BGRADB, since the process began.
long bias_gradient_epilogue_fallbacks();
// Off: the tanh GELU's products without their GELU epilogues, the GELU kernels after them (on
// by default; for benchmarks and tests comparing the two, process-wide).
void set_gelu_epilogue(bool on);
bool gelu_epilogue();
// How many products that could take a GELU epilogue (bf16, width a multiple of 8, epilogues
// on) ran the fallback because cuBLASLt offered no algorithm with it, since the process began.
long gelu_epilogue_fallbacks();
// C = op(A) op(B) + bias[N] broadcast over rows (cuBLASLt BIAS epilogue: one pass over C).
// cuBLASLt's GELU epilogue computes the tanh approximation, not the exact erf GELU
// (model.activation: gelu), which stays a separate kernel (gelu_forward); ReLU, exact, and the
// tanh GELU (gelu_tanh) are fused (linear_forward_mixed, linear_gelu_tanh_forward_mixed).
void gemm_bias(bool trans_a, bool trans_b, i64 M, i64 N, i64 K, const float* A, i64 lda,
               const float* B, i64 ldb, const float* bias, float* C, i64 ldc);
// bf16 inputs and output, fp32 accumulation (and fp32 alpha, beta).
void gemm_bf16(bool trans_a, bool trans_b, i64 M, i64 N, i64 K, float alpha, const bf16* A, i64 lda,
               const bf16* B, i64 ldb, float beta, bf16* C, i64 ldc);

// ---- elementwise ------------------------------------------------------------------------
void bias_add(float* out, const float* in, const float* bias, i64 rows, i64 cols);
void bias_fill(float* out, const float* bias, i64 rows, i64 cols);
void bias_backward_accumulate(float* dbias, const float* dout, i64 rows, i64 cols);
void add(float* out, const float* a, const float* b, i64 n);
void add_accumulate(float* out, const float* a, i64 n);
void scale(float* out, const float* in, float alpha, i64 n);
void gelu_forward(float* out, const float* in, i64 n);
void gelu_backward(float* din, const float* dout, const float* in, i64 n,
                   const float* out = nullptr);
// The tanh approximation of GELU (model.activation: gelu_tanh), as cpu::gelu_tanh_forward.
void gelu_tanh_forward(float* out, const float* in, i64 n);
void gelu_tanh_backward(float* din, const float* dout, const float* in, i64 n);
void relu_forward(float* out, const float* in, i64 n);
void relu_backward(float* din, const float* dout, const float* in, i64 n);
// bf16 activations (layers/precision.h): the same with the models' bf16 operands, loading
// bf16, computing in fp32 and storing bf16 (round to nearest even).
void bias_backward_accumulate(float* dbias, const bf16* dout, i64 rows, i64 cols);
void add(float* out, const float* a, const bf16* b, i64 n);
void gelu_forward(bf16* out, const bf16* in, i64 n);
void gelu_backward(bf16* din, const bf16* dout, const bf16* in, i64 n);
void gelu_tanh_forward(bf16* out, const bf16* in, i64 n);
void gelu_tanh_backward(bf16* din, const bf16* dout, const bf16* in, i64 n);
void relu_forward(bf16* out, const bf16* in, i64 n);
void relu_backward(bf16* din, const bf16* dout, const bf16* in, i64 n);

// ---- LayerNorm ----------------------------------------------------------------------------
void layernorm_forward(float* out, float* mean, float* rstd, const float* in, const float* weight,
                       const float* bias, i64 rows, i64 cols, float eps);
void layernorm_backward(float* din, float* dweight, float* dbias, const float* dout,
                        const float* in, const float* weight, const float* mean, const float* rstd,
                        i64 rows, i64 cols, const float* residual = nullptr);
// bf16 activations: a bf16 output (forward), a bf16 output gradient (backward).
void layernorm_forward(bf16* out, float* mean, float* rstd, const float* in, const float* weight,
                       const float* bias, i64 rows, i64 cols, float eps);
void layernorm_backward(float* din, float* dweight, float* dbias, const bf16* dout, const float* in,
                        const float* weight, const float* mean, const float* rstd, i64 rows,
                        i64 cols, const float* residual = nullptr);
// Off: the backward as two passes (din, then the parameter gradients' column sums over every
// element) also for rows the one-pass kernel takes (on by default; for benchmarks and tests
// comparing the two, process-wide).
void set_layernorm_one_pass_backward(bool on);
bool layernorm_one_pass_backward();

// ---- softmax ------------------------------------------------------------------------------
void softmax_forward(float* out, const float* in, i64 rows, i64 cols);
void softmax_backward(float* din, const float* dout, const float* out, i64 rows, i64 cols);

// ---- attention ------------------------------------------------------------------------------
// As cpu::attention_forward / attention_backward (kv_len, keep_mask may be null): batched
// cuBLASLt products over (batch, head) and one warp per score row for softmax and its
// gradient; `scratch` holds [B, H, Tq, Tk] floats.
void attention_forward(float* out, float* probs, const float* q, const float* k, const float* v,
                       const std::int32_t* kv_len, const std::uint8_t* keep_mask, float keep_scale,
                       i64 B, i64 H, i64 Tq, i64 Tk, i64 Dh, bool causal, i64 q_offset);
void attention_backward(float* dq, float* dk, float* dv, float* scratch, const float* dout,
                        const float* probs, const float* q, const float* k, const float* v,
                        const std::uint8_t* keep_mask, float keep_scale, i64 B, i64 H, i64 Tq,
                        i64 Tk, i64 Dh);
// bf16 activations: bf16 projections in, bf16 results out (under bf16 products only); the
// probabilities and scratch stay f32.
void attention_forward(bf16* out, float* probs, const bf16* q, const bf16* k, const bf16* v,
                       const std::int32_t* kv_len, const std::uint8_t* keep_mask, float keep_scale,
                       i64 B, i64 H, i64 Tq, i64 Tk, i64 Dh, bool causal, i64 q_offset);
void attention_backward(bf16* dq, bf16* dk, bf16* dv, float* scratch, const bf16* dout,
                        const float* probs, const bf16* q, const bf16* k, const bf16* v,
                        const std::uint8_t* keep_mask, float keep_scale, i64 B, i64 H, i64 Tq,
                        i64 Tk, i64 Dh);

// ---- flash attention --------------------------------------------------------------------
// As cpu::flash_attention_forward / flash_attention_backward on projections [B, T, H*Dh],
// read and written in place (no head permutations); lse f32 [B, H, Tq]. 64-query x 64-key
// tiles; scores and probabilities never reach global memory. bf16: tensor cores (bf16
// products, fp32 accumulation; compute capability 8.0 or later) through mma.sync with the
// scores in registers (the default), or through WMMA with them staged in shared memory
// (set_flash_mma_kernels(false), TR_FLASH_KERNELS=wmma); both families are checked on an H200,
// where the mma.sync ones take about half the time. fp32: FMAs on the CUDA cores,
// register-tiled. The backward runs one kernel for dk/dv (per key tile) and one for dq (per
// query tile), recomputing the probabilities in each: no atomics, so results are reproducible.
// Heads of at most kFlashMaxHeadDim columns.
constexpr i64 kFlashMaxHeadDim = 128;
void set_flash_mma_kernels(bool on);
bool flash_mma_kernels();
// Whether the current GPU runs the flash kernels of a precision and head width: bf16 needs
// compute capability 8.0, and the widest kernel's shared memory must fit one block there (the
// fp32 dk/dv kernel of heads of 128 takes 153 KiB, more than an RTX 30 or 40 series GPU's
// 99 KiB). ops::use_flash_attention sends the others to the materialised kernels.
bool flash_attention_supported(bool bf16, i64 Dh);
void flash_attention_forward(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v,
                             const std::int32_t* kv_len, const std::uint8_t* keep_mask,
                             float keep_scale, i64 B, i64 H, i64 Tq, i64 Tk, i64 Dh, bool causal,
                             i64 q_offset);
void flash_attention_backward(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* out,
                              const float* lse, const bf16* q, const bf16* k, const bf16* v,
                              const std::int32_t* kv_len, const std::uint8_t* keep_mask,
                              float keep_scale, i64 B, i64 H, i64 Tq, i64 Tk, i64 Dh, bool causal,
                              i64 q_offset);
void flash_attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                             const std::int32_t* kv_len, const std::uint8_t* keep_mask,
                             float keep_scale, i64 B, i64 H, i64 Tq, i64 Tk, i64 Dh, bool causal,
                             i64 q_offset);
void flash_attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out,
                              const float* lse, const float* q, const float* k, const float* v,
                              const std::int32_t* kv_len, const std::uint8_t* keep_mask,
                              float keep_scale, i64 B, i64 H, i64 Tq, i64 Tk, i64 Dh, bool causal,
                              i64 q_offset);

// ---- attention through cuDNN (cudnn_attention.cu) -----------------------------------------
// bf16 flash attention by cuDNN's fused engines, with flash_attention_forward/backward's
// arguments and results (lse in the same natural-log form, so either direction may run on
// either implementation; dropout through the caller's keep mask, so the masks stay the CPU's).
// Each returns false, having done nothing, where cuDNN does not take the call: cuDNN missing
// (or TR_CUDNN=0) or the GPU before sm_80, a causal q_offset, a head width not a multiple of 8
// or above 128, an operand not 16-byte aligned, or no cuDNN engine for the shape. The caller
// then runs the own kernels.
bool cudnn_attention_available();
// Process-wide switch (default on): off sends every call to the own kernels, for tests and
// benchmarks that measure those. TR_CUDNN=0 in the environment keeps cuDNN unloaded altogether.
void set_cudnn_attention_enabled(bool on);
// The loaded cuDNN's version ("9.19.0") or why there is none, for `trainer info`.
std::string cudnn_attention_status();
// Plans are made per shape, each compiling cuDNN's kernel (about a second): a shape gets its
// plan at its `calls_before_plan`-th call (default 2: shapes met once stay on the own kernels),
// and no plans are made once making them has taken `budget_seconds` (default 60, or
// TR_CUDNN_PLAN_SECONDS). Tests and benchmarks set (1, large) to plan every shape at once.
void set_cudnn_plan_policy(int calls_before_plan, double budget_seconds);
// The last shape cuDNN declined and why ("" when none has been): for tests and benchmarks.
std::string cudnn_attention_last_problem();
bool cudnn_attention_forward(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v,
                             const std::int32_t* kv_len, const std::uint8_t* keep_mask,
                             float keep_scale, i64 B, i64 H, i64 Tq, i64 Tk, i64 Dh, bool causal,
                             i64 q_offset);
bool cudnn_attention_backward(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* out,
                              const float* lse, const bf16* q, const bf16* k, const bf16* v,
                              const std::int32_t* kv_len, const std::uint8_t* keep_mask,
                              float keep_scale, i64 B, i64 H, i64 Tq, i64 Tk, i64 Dh, bool causal,
                              i64 q_offset);
// Dropout drawn inside cuDNN's fused kernels (train.attention_dropout: fused): the keep mask
// comes from cuDNN's Philox RNG keyed by `seed`, Bernoulli with `keep_probability`, and is never
// stored; the backward draws it again from the same seed. The masks are cuDNN's, not the CPU's.
// The forward returns false, having done nothing, where cuDNN does not take the call (as
// above) or has no plans for both directions of the shape (yet: plans are made at a shape's
// second call); the caller then draws its own mask and runs the calls above or the own
// kernels. After a forward that returned true, the backward of the same call must come here:
// it runs on the plan made with the forward's, and throws InternalError where cuDNN fails it
// (no other kernel can draw that mask again).
bool cudnn_attention_forward_drawn_dropout(bf16* out, float* lse, const bf16* q, const bf16* k,
                                           const bf16* v, const std::int32_t* kv_len,
                                           float keep_probability, std::uint64_t seed, i64 B, i64 H,
                                           i64 Tq, i64 Tk, i64 Dh, bool causal);
void cudnn_attention_backward_drawn_dropout(bf16* dq, bf16* dk, bf16* dv, const bf16* dout,
                                            const bf16* out, const float* lse, const bf16* q,
                                            const bf16* k, const bf16* v,
                                            const std::int32_t* kv_len, float keep_probability,
                                            std::uint64_t seed, i64 B, i64 H, i64 Tq, i64 Tk,
                                            i64 Dh, bool causal);

// ---- embedding ----------------------------------------------------------------------------
void embedding_forward(float* out, const std::int32_t* ids, const float* table, i64 N, i64 d,
                       float scale);
// Token order per column, as the CPU: deterministic, no atomics.
void embedding_backward_accumulate(float* dtable, const std::int32_t* ids, const float* dout, i64 N,
                                   i64 d, float scale);

// Vocabulary-parallel lookups, as cpu::embedding_forward_shard / _backward_shard_accumulate.
void embedding_forward_shard(float* out, const std::int32_t* ids, const float* table, i64 N, i64 d,
                             i64 first, i64 V_local, float scale);
void embedding_backward_shard_accumulate(float* dtable, const std::int32_t* ids, const float* dout,
                                         i64 N, i64 d, i64 first, i64 V_local, float scale);

// ---- cross entropy ----------------------------------------------------------------------
// Returns the summed loss (double, row order, on the host: synchronises).
// As cpu::argmax_rows (one block per row; equal values: the lowest index).
void argmax_rows(std::int32_t* out, const float* x, i64 N, i64 V);
double cross_entropy_forward(float* loss, float* logsumexp, const float* logits,
                             const std::int32_t* targets, i64 N, i64 V, float eps,
                             std::int32_t ignore_index);
void cross_entropy_backward(float* dlogits, const float* logits, const float* logsumexp,
                            const std::int32_t* targets, i64 N, i64 V, float eps,
                            std::int32_t ignore_index, float scale);

// Vocabulary-parallel passes, as cpu::ce_shard_* (row statistics in double).
void ce_shard_max(double* row_max, const float* logits, i64 N, i64 V_local, i64 valid);
void ce_shard_sums(double* sums, const float* logits, const std::int32_t* targets,
                   const double* row_max, i64 N, i64 V_local, i64 valid, i64 first,
                   std::int32_t ignore_index);
void ce_shard_backward(float* dlogits, const float* logits, const double* logsumexp,
                       const std::int32_t* targets, i64 N, i64 V_local, i64 valid, i64 first, i64 V,
                       float eps, std::int32_t ignore_index, float scale);

// ---- dropout ------------------------------------------------------------------------------
// The same Philox counters as cpu::dropout_mask: bit-identical masks on both devices.
void dropout_mask(std::uint8_t* keep, i64 n, float p, std::uint64_t seed, std::uint64_t stream,
                  std::uint64_t offset);
// The strided layout of ops::dropout_mask (layers/dropout.h's counters): a mask of `rows` rows
// of K; row r, whose leading indices (i_0, ..., i_{n-1}) it enumerates last-fastest over
// dims[0..n), starts at counter offset + sum_j i_j * strides[j]. At most 4 leading dimensions.
struct DropoutLayout {
  i64 dims[4] = {1, 1, 1, 1};
  std::uint64_t strides[4] = {0, 0, 0, 0};
  int n = 0;
};
void dropout_mask_strided(std::uint8_t* keep, i64 rows, i64 K, const DropoutLayout& layout, float p,
                          std::uint64_t seed, std::uint64_t stream, std::uint64_t offset);
void dropout_apply(float* out, const float* in, const std::uint8_t* keep, float scale, i64 n);
void dropout_add(float* out, const float* skip, const float* in, const std::uint8_t* keep,
                 float scale, i64 n);
// bf16 activations: a bf16 tensor's dropout, and a bf16 branch added to the f32 stream.
void dropout_apply(bf16* out, const bf16* in, const std::uint8_t* keep, float scale, i64 n);
void dropout_add(float* out, const float* skip, const bf16* in, const std::uint8_t* keep,
                 float scale, i64 n);

// ---- optimizer updates ------------------------------------------------------------------
void adamw_update(float* param, const float* grad, float* m, float* v, i64 n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, i64 step);
void sgd_update(float* param, const float* grad, float* momentum_buf, i64 n, float lr,
                float momentum, float weight_decay, bool first_step);

// ---- reductions ---------------------------------------------------------------------------
// Sum of squares in double, fixed order; returned to the host (synchronises).
double sum_squares(const float* x, i64 n);
// out[k] = sum_squares(xs[k], ns[k]) for k < count, bitwise, with one synchronisation for all
// (the gradient norm over a model's tensors reads back once per step, not once per tensor).
void sum_squares_each(double* out, const float* const* xs, const i64* ns, i64 count);

}  // namespace tr::cuda
