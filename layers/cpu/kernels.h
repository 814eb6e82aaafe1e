// CPU kernels: plain functions on raw pointers, shapes named in the signature (llm.c style).
//
// Conventions
// - Outputs come first. A function whose name ends in `_accumulate` adds into its output
//   (`+=`); every other function overwrites its outputs.
// - All arrays are contiguous row-major. "rows x cols" means rows arrays of cols elements.
// - T is float (speed) or double (fp64 references and gradient checks). Instantiated for both.
// - Parallel inside with OpenMP; every reduction has a fixed order, so results are bitwise
//   reproducible for a given thread count and input.
#pragma once

#include <cstdint>

namespace tr::cpu {

using i64 = std::int64_t;

// ---- GEMM (OpenBLAS) ------------------------------------------------------------------
// C[M,N] = alpha * op(A) op(B) + beta * C, row-major, with leading dimensions.
// op(A) is A[M,K] (lda >= K) or, when trans_a, A is stored [K,M] (lda >= M). Same for B.
template <typename T>
void gemm(bool trans_a, bool trans_b, i64 M, i64 N, i64 K, T alpha, const T* A, i64 lda, const T* B,
          i64 ldb, T beta, T* C, i64 ldc);

// ---- elementwise ------------------------------------------------------------------------
// out[r, c] = in[r, c] + bias[c]   (out may equal in)
template <typename T>
void bias_add(T* out, const T* in, const T* bias, i64 rows, i64 cols);
// out[r, c] = bias[c]  (the C of a GEMM with beta = 1 that then adds the product: bias fused)
template <typename T>
void bias_fill(T* out, const T* bias, i64 rows, i64 cols);
// dbias[c] += sum_r dout[r, c]
template <typename T>
void bias_backward_accumulate(T* dbias, const T* dout, i64 rows, i64 cols);
// out = a + b   (out may alias a or b)
template <typename T>
void add(T* out, const T* a, const T* b, i64 n);
// out += a
template <typename T>
void add_accumulate(T* out, const T* a, i64 n);
// out = alpha * in   (out may alias in)
template <typename T>
void scale(T* out, const T* in, T alpha, i64 n);

// GELU, exact erf form: x * 0.5 * (1 + erf(x / sqrt(2))).
template <typename T>
void gelu_forward(T* out, const T* in, i64 n);
// din = dout * gelu'(in). When out (the forward's output gelu(in)) is given, the fp32 kernel
// takes Phi(in) = out / in from it instead of evaluating erf again (one exp per element instead
// of two); the fp64 kernel always evaluates std::erf.
template <typename T>
void gelu_backward(T* din, const T* dout, const T* in, i64 n, const T* out = nullptr);
// GELU, tanh approximation (PyTorch's approximate='tanh', GPT-2's and llm.c's, cuBLASLt's GELU
// epilogues): x * 0.5 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))).
template <typename T>
void gelu_tanh_forward(T* out, const T* in, i64 n);
// din = dout * gelu_tanh'(in)
template <typename T>
void gelu_tanh_backward(T* din, const T* dout, const T* in, i64 n);
template <typename T>
void relu_forward(T* out, const T* in, i64 n);
// din = dout * (in > 0)
template <typename T>
void relu_backward(T* din, const T* dout, const T* in, i64 n);

// ---- LayerNorm over the last axis ---------------------------------------------------------
// out = (in - mean) * rstd * weight + bias; saves mean[rows] and rstd[rows] for backward.
template <typename T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* in, const T* weight, const T* bias,
                       i64 rows, i64 cols, T eps);
// din overwritten (din = residual + d(LayerNorm input) when residual is not null: the skip
// gradient of a pre-LN block added in the same pass); dweight and dbias accumulated.
template <typename T>
void layernorm_backward(T* din, T* dweight, T* dbias, const T* dout, const T* in, const T* weight,
                        const T* mean, const T* rstd, i64 rows, i64 cols,
                        const T* residual = nullptr);

// ---- softmax over the last axis -----------------------------------------------------------
template <typename T>
void softmax_forward(T* out, const T* in, i64 rows, i64 cols);
// din = out * (dout - sum(dout * out))
template <typename T>
void softmax_backward(T* din, const T* dout, const T* out, i64 rows, i64 cols);

// ---- attention --------------------------------------------------------------------------
// Multi-head scaled dot-product attention, heads read in place from the projection outputs:
//   q [B, Tq, H*Dh], k and v [B, Tk, H*Dh], out [B, Tq, H*Dh], probs [B, H, Tq, Tk].
// probs = softmax(q k^T / sqrt(Dh) + mask), the mask hiding keys j >= kv_len[b] (kv_len may be
// null: all keys valid) and, when causal, keys j > i + q_offset (query i sits at position
// i + q_offset; 0 in training). Masked probabilities are exactly 0.
// out = dropped(probs) v, where dropped = probs * keep_mask * keep_scale when keep_mask
// (uint8 [B, H, Tq, Tk], 1 = keep) is not null.
template <typename T>
void attention_forward(T* out, T* probs, const T* q, const T* k, const T* v,
                       const std::int32_t* kv_len, const std::uint8_t* keep_mask, T keep_scale,
                       i64 B, i64 H, i64 Tq, i64 Tk, i64 Dh, bool causal, i64 q_offset);
// dq, dk, dv overwritten. scratch: at least B * H * Tq * Tk elements.
template <typename T>
void attention_backward(T* dq, T* dk, T* dv, T* scratch, const T* dout, const T* probs, const T* q,
                        const T* k, const T* v, const std::uint8_t* keep_mask, T keep_scale, i64 B,
                        i64 H, i64 Tq, i64 Tk, i64 Dh);

// Attention that stores no probabilities (flash-style; the CUDA flash kernels' twin): out as
// attention_forward, and lse [B, H, Tq] = log of each row's softmax denominator over the scaled,
// masked scores (+inf for a row with no visible key). The backward recomputes the probabilities
// as exp(scaled score - lse) and uses rowsum(dout * out) for rowsum(dP * P); dq, dk, dv are
// overwritten.
template <typename T>
void flash_attention_forward(T* out, T* lse, const T* q, const T* k, const T* v,
                             const std::int32_t* kv_len, const std::uint8_t* keep_mask,
                             T keep_scale, i64 B, i64 H, i64 Tq, i64 Tk, i64 Dh, bool causal,
                             i64 q_offset);
template <typename T>
void flash_attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* out, const T* lse,
                              const T* q, const T* k, const T* v, const std::int32_t* kv_len,
                              const std::uint8_t* keep_mask, T keep_scale, i64 B, i64 H, i64 Tq,
                              i64 Tk, i64 Dh, bool causal, i64 q_offset);

// ---- embedding ----------------------------------------------------------------------------
// out[n, :] = table[ids[n], :] * scale        (table [V, d]; ids checked by the caller)
template <typename T>
void embedding_forward(T* out, const std::int32_t* ids, const T* table, i64 N, i64 d, T scale);
// dtable[ids[n], :] += dout[n, :] * scale, in token order (deterministic)
template <typename T>
void embedding_backward_accumulate(T* dtable, const std::int32_t* ids, const T* dout, i64 N, i64 d,
                                   T scale);

// Vocabulary-parallel lookups (a table holding rows [first, first + V_local) of the full one):
// out[n, :] = table[ids[n] - first, :] * scale for ids inside the shard, 0 for the others.
template <typename T>
void embedding_forward_shard(T* out, const std::int32_t* ids, const T* table, i64 N, i64 d,
                             i64 first, i64 V_local, T scale);
// dtable[ids[n] - first, :] += dout[n, :] * scale for ids inside the shard, in token order.
template <typename T>
void embedding_backward_shard_accumulate(T* dtable, const std::int32_t* ids, const T* dout, i64 N,
                                         i64 d, i64 first, i64 V_local, T scale);

// ---- cross entropy ----------------------------------------------------------------------
// Per row n of logits [N, V]: with p = softmax(logits[n]) and target t = targets[n],
//   loss[n] = (1 - eps) * (-log p_t) + eps * mean_v(-log p_v),  0 where t == ignore_index.
// Also saves logsumexp[n] for backward. Returns the sum of loss over rows (accumulated in
// double, fixed order).
template <typename T>
double cross_entropy_forward(T* loss, T* logsumexp, const T* logits, const std::int32_t* targets,
                             i64 N, i64 V, T eps, std::int32_t ignore_index);
// dlogits[n] = scale * (p - (1 - eps) onehot(t) - eps / V) for counted rows, 0 for ignored rows.
// out[n] = the index of the largest of x[n, 0..V): the first of equal ones (V >= 1). A row
// holding NaN gives an unspecified index.
template <typename T>
void argmax_rows(std::int32_t* out, const T* x, i64 N, i64 V);

// dlogits may be logits (computed in place; so may ce_shard_backward's).
template <typename T>
void cross_entropy_backward(T* dlogits, const T* logits, const T* logsumexp,
                            const std::int32_t* targets, i64 N, i64 V, T eps,
                            std::int32_t ignore_index, T scale);

// Vocabulary-parallel cross entropy (parallel/ all-reduces between the passes): a rank holds
// logits [N, V_local] of the full vocabulary's columns [first, first + valid); local columns
// from `valid` on are padding and never count. Row statistics are double.
// row_max[n] = max over the rank's valid columns (-inf when it has none).
template <typename T>
void ce_shard_max(double* row_max, const T* logits, i64 N, i64 V_local, i64 valid);
// With the group's row maximum: sums[0 * N + n] = sum exp(x - max), sums[1 * N + n] = the
// target's logit when the target is one of this rank's columns (else 0), sums[2 * N + n] = sum
// of the logits; rows whose target is ignore_index give zeros.
template <typename T>
void ce_shard_sums(double* sums, const T* logits, const std::int32_t* targets,
                   const double* row_max, i64 N, i64 V_local, i64 valid, i64 first,
                   std::int32_t ignore_index);
// dlogits[n, v] = scale * (exp(x - lse[n]) - eps / V - (1 - eps) [first + v == t]) for valid
// columns of counted rows; 0 for padding columns and ignored rows.
template <typename T>
void ce_shard_backward(T* dlogits, const T* logits, const double* logsumexp,
                       const std::int32_t* targets, i64 N, i64 V_local, i64 valid, i64 first, i64 V,
                       T eps, std::int32_t ignore_index, T scale);

// ---- dropout ------------------------------------------------------------------------------
// Counter-based keep mask: element i keeps with probability 1 - p, decided by Philox4x32-10
// keyed by (seed, stream) at counter (offset + i). Independent of threads and layout.
void dropout_mask(std::uint8_t* keep, i64 n, float p, std::uint64_t seed, std::uint64_t stream,
                  std::uint64_t offset);
// out = in * keep * scale (scale = 1 / (1 - p)); used both forward and backward.
template <typename T>
void dropout_apply(T* out, const T* in, const std::uint8_t* keep, T scale, i64 n);
// out = skip + in * keep * scale: dropout and residual add in one pass (out may alias skip).
template <typename T>
void dropout_add(T* out, const T* skip, const T* in, const std::uint8_t* keep, T scale, i64 n);

// ---- optimizer updates (exactly as torch.optim, step counted from 1) ----------------------
// AdamW: param *= 1 - lr * weight_decay; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
// param -= lr / (1 - b1^step) * m / (sqrt(v) / sqrt(1 - b2^step) + eps)
template <typename T>
void adamw_update(T* param, const T* grad, T* m, T* v, i64 n, T lr, T beta1, T beta2, T eps,
                  T weight_decay, i64 step);
// SGD with momentum (dampening 0, not Nesterov): g += weight_decay * param;
// buf = g on the first step, else momentum * buf + g; param -= lr * buf.
// With momentum == 0, buf is not touched (may be null).
template <typename T>
void sgd_update(T* param, const T* grad, T* momentum_buf, i64 n, T lr, T momentum, T weight_decay,
                bool first_step);

// ---- reductions ---------------------------------------------------------------------------
// sum of squares in double, fixed order
template <typename T>
double sum_squares(const T* x, i64 n);

}  // namespace tr::cpu
