// Multi-head attention on CUDA: the heads are gathered into [B, H, T, Dh] blocks (one cheap
// permutation each way), so that each product is one strided-batched cuBLASLt call over all
// (batch, head) pairs; softmax, masks and dropout, and the softmax gradient run one warp per
// score row. Scores and probabilities are materialised ([B, H, Tq, Tk], kept for backward as
// the CPU does). Under bf16 products the kernels write the products' operands in bf16
// themselves. Not flash-style: the score matrix is stored (cuDNN's fused SDPA is not used yet).
// The kernels are in attention_kernels.cuh; this file has their launches and the products.
#include <cuda_bf16.h>

#include <cmath>

#include "layers/cuda/attention_kernels.cuh"
#include "layers/cuda/kernels.h"
#include "layers/cuda/launch.cuh"
#include "layers/cuda/runtime.h"
#include "layers/op_profile.h"

namespace tr::cuda {

namespace {

using namespace attn;

template <typename V, typename I>
void launch_swap_middle(V* out, const V* in, i64 B, i64 X, i64 Y, i64 D) {
  swap_middle_kernel<V, I><<<grid_for(B * X * Y * D), kThreads, 0, compute_stream()>>>(
      out, in, static_cast<I>(B), static_cast<I>(X), static_cast<I>(Y), static_cast<I>(D));
  TR_CUDA_LAUNCH_CHECK();
}

void swap_middle(float* out, const float* in, i64 B, i64 X, i64 Y, i64 D) {
  const i64 n = B * X * Y * D;
  if (n <= 0) return;
  const auto [by_four, small] = swap_middle_path(out, in, n, D);
  if (by_four && small)
    launch_swap_middle<float4, std::uint32_t>(reinterpret_cast<float4*>(out),
                                              reinterpret_cast<const float4*>(in), B, X, Y, D / 4);
  else if (by_four)
    launch_swap_middle<float4, i64>(reinterpret_cast<float4*>(out),
                                    reinterpret_cast<const float4*>(in), B, X, Y, D / 4);
  else if (small)
    launch_swap_middle<float, std::uint32_t>(out, in, B, X, Y, D);
  else
    launch_swap_middle<float, i64>(out, in, B, X, Y, D);
}

template <typename In, typename Out>
void swap_middle_as(Out* out, const In* in, i64 B, i64 X, i64 Y, i64 D) {
  const i64 n = B * X * Y * D;
  if (n <= 0) return;
  TR_CHECK(n < (i64{1} << 31), "attention under bf16: more than 2^31 elements in q, k or v");
  swap_middle_as_kernel<In, Out><<<grid_for(n), kThreads, 0, compute_stream()>>>(
      out, in, static_cast<std::uint32_t>(B), static_cast<std::uint32_t>(X),
      static_cast<std::uint32_t>(Y), static_cast<std::uint32_t>(D));
  TR_CUDA_LAUNCH_CHECK();
}

template <typename In>
void gather_heads_bf16(bf16* out, const In* in, i64 B, i64 X, i64 Y, i64 D) {
  swap_middle_as<In, bf16>(out, in, B, X, Y, D);
}

// The heads' results back into the projection layout: float4 moves for float (swap_middle).
void scatter_heads(float* out, const float* in, i64 B, i64 X, i64 Y, i64 D) {
  swap_middle(out, in, B, X, Y, D);
}
void scatter_heads(bf16* out, const float* in, i64 B, i64 X, i64 Y, i64 D) {
  swap_middle_as<float, bf16>(out, in, B, X, Y, D);
}

void zero_floats(float* p, i64 n) {
  if (n > 0)
    TR_CUDA_CHECK(
        cudaMemsetAsync(p, 0, static_cast<std::size_t>(n) * sizeof(float), compute_stream()));
}

// ---- under bf16 products (train.precision: bf16) --------------------------------------------
// The same steps, with every product's operands written in bf16 by the kernel that makes them
// (the gathers, the softmax and its gradient): no separate rounding pass, half the bytes read
// by the products. Probabilities, scores and gradients stay fp32.

// T: the storage of q, k, v and out (float, or bf16 under bf16 activations).
template <typename T>
void attention_forward_bf16(T* out, float* probs, const T* q, const T* k, const T* v,
                            const std::int32_t* kv_len, const std::uint8_t* keep_mask,
                            float keep_scale, i64 B, i64 H, i64 Tq, i64 Tk, i64 Dh, bool causal,
                            i64 q_offset) {
  const i64 rows = B * H * Tq, pairs = B * H;
  const i64 nq = B * Tq * H * Dh, nk = B * Tk * H * Dh;
  // Element counts rounded up to 8 (16 bytes) so that each operand starts aligned.
  const auto a8 = [](i64 n) { return (n + 7) / 8 * 8; };
  StreamScratch operands((a8(nq) + 2 * a8(nk) + a8(rows * Tk)) * sizeof(bf16));
  StreamScratch out_heads(static_cast<std::size_t>(nq) * sizeof(float));
  bf16* q16 = operands.as<bf16>();
  bf16* k16 = q16 + a8(nq);
  bf16* v16 = k16 + a8(nk);
  bf16* p16 = v16 + a8(nk);
  float* oh = out_heads.as<float>();
  {
    OpTimer part("attention_forward: heads gathered");
    gather_heads_bf16(q16, q, B, Tq, H, Dh);
    gather_heads_bf16(k16, k, B, Tk, H, Dh);
    gather_heads_bf16(v16, v, B, Tk, H, Dh);
  }
  {
    OpTimer part("attention_forward: q k^T");
    gemm_strided_batched_bf16_in(false, true, Tq, Tk, Dh, attention_scale(Dh), q16, Dh, Tq * Dh,
                                 k16, Dh, Tk * Dh, 0.0f, probs, Tk, Tq * Tk, pairs);
  }
  {
    OpTimer part("attention_forward: softmax");
    softmax_rows_kernel<<<row_blocks(rows), kRowBlockThreads, 0, compute_stream()>>>(
        probs, nullptr, reinterpret_cast<__nv_bfloat16*>(p16), kv_len, keep_mask, keep_scale, rows,
        H, Tq, Tk, causal, q_offset);
    TR_CUDA_LAUNCH_CHECK();
  }
  OpTimer part("attention_forward: P v, heads scattered");
  gemm_strided_batched_bf16_in(false, false, Tq, Dh, Tk, 1.0f, p16, Tk, Tq * Tk, v16, Dh, Tk * Dh,
                               0.0f, oh, Dh, Tq * Dh, pairs);
  scatter_heads(out, oh, B, H, Tq, Dh);
}

template <typename T>
void attention_backward_bf16(T* dq, T* dk, T* dv, float* scratch, const T* dout, const float* probs,
                             const T* q, const T* k, const T* v, const std::uint8_t* keep_mask,
                             float keep_scale, i64 B, i64 H, i64 Tq, i64 Tk, i64 Dh) {
  const i64 rows = B * H * Tq, pairs = B * H;
  const i64 nq = B * Tq * H * Dh, nk = B * Tk * H * Dh;
  const float scale = attention_scale(Dh);
  const auto a8 = [](i64 n) { return (n + 7) / 8 * 8; };
  // bf16: q, dout, k, v and one [rows, Tk] operand (dropped P, then dS); fp32: the gradients.
  StreamScratch operands((2 * a8(nq) + 2 * a8(nk) + a8(rows * Tk)) * sizeof(bf16));
  StreamScratch grads((nq + 2 * nk) * sizeof(float));
  bf16* q16 = operands.as<bf16>();
  bf16* g16 = q16 + a8(nq);
  bf16* k16 = g16 + a8(nq);
  bf16* v16 = k16 + a8(nk);
  bf16* s16 = v16 + a8(nk);
  float* dqh = grads.as<float>();
  float* dkh = dqh + nq;
  float* dvh = dkh + nk;
  {
    OpTimer part("attention_backward: heads gathered");
    gather_heads_bf16(q16, q, B, Tq, H, Dh);
    gather_heads_bf16(g16, dout, B, Tq, H, Dh);
    gather_heads_bf16(k16, k, B, Tk, H, Dh);
    gather_heads_bf16(v16, v, B, Tk, H, Dh);
  }
  {
    OpTimer part("attention_backward: dv");  // dv = dropped(P)^T dout
    dropped_bf16_kernel<<<grid_for(rows * Tk), kThreads, 0, compute_stream()>>>(
        reinterpret_cast<__nv_bfloat16*>(s16), probs, keep_mask, keep_scale, rows * Tk);
    TR_CUDA_LAUNCH_CHECK();
    gemm_strided_batched_bf16_in(true, false, Tk, Dh, Tq, 1.0f, s16, Tk, Tq * Tk, g16, Dh, Tq * Dh,
                                 0.0f, dvh, Dh, Tk * Dh, pairs);
  }
  {
    OpTimer part("attention_backward: dout v^T");
    gemm_strided_batched_bf16_in(false, true, Tq, Tk, Dh, 1.0f, g16, Dh, Tq * Dh, v16, Dh, Tk * Dh,
                                 0.0f, scratch, Tk, Tq * Tk, pairs);
  }
  {
    OpTimer part("attention_backward: softmax");  // dS, and its bf16 copy in s16
    softmax_grad_rows_kernel<<<row_blocks(rows), kRowBlockThreads, 0, compute_stream()>>>(
        scratch, reinterpret_cast<__nv_bfloat16*>(s16), probs, keep_mask, keep_scale, rows, Tk);
    TR_CUDA_LAUNCH_CHECK();
  }
  OpTimer part("attention_backward: dq, dk, heads scattered");
  gemm_strided_batched_bf16_in(false, false, Tq, Dh, Tk, scale, s16, Tk, Tq * Tk, k16, Dh, Tk * Dh,
                               0.0f, dqh, Dh, Tq * Dh, pairs);
  gemm_strided_batched_bf16_in(true, false, Tk, Dh, Tq, scale, s16, Tk, Tq * Tk, q16, Dh, Tq * Dh,
                               0.0f, dkh, Dh, Tk * Dh, pairs);
  scatter_heads(dq, dqh, B, H, Tq, Dh);
  scatter_heads(dk, dkh, B, H, Tk, Dh);
  scatter_heads(dv, dvh, B, H, Tk, Dh);
}

}  // namespace

void attention_forward(bf16* out, float* probs, const bf16* q, const bf16* k, const bf16* v,
                       const std::int32_t* kv_len, const std::uint8_t* keep_mask, float keep_scale,
                       i64 B, i64 H, i64 Tq, i64 Tk, i64 Dh, bool causal, i64 q_offset) {
  TR_CHECK(bf16_matmuls(), "attention on bf16 projections outside bf16 products");
  if (B * H * Tq <= 0) return;
  if (Tk <= 0) {  // no keys: a zero output, as the CPU
    memset_zero(out, static_cast<std::size_t>(B * Tq * H * Dh) * sizeof(bf16));
    return;
  }
  attention_forward_bf16(out, probs, q, k, v, kv_len, keep_mask, keep_scale, B, H, Tq, Tk, Dh,
                         causal, q_offset);
}

void attention_backward(bf16* dq, bf16* dk, bf16* dv, float* scratch, const bf16* dout,
                        const float* probs, const bf16* q, const bf16* k, const bf16* v,
                        const std::uint8_t* keep_mask, float keep_scale, i64 B, i64 H, i64 Tq,
                        i64 Tk, i64 Dh) {
  TR_CHECK(bf16_matmuls(), "attention on bf16 projections outside bf16 products");
  if (B * H * Tq <= 0 || Tk <= 0) {
    memset_zero(dq, static_cast<std::size_t>(B * Tq * H * Dh) * sizeof(bf16));
    memset_zero(dk, static_cast<std::size_t>(B * Tk * H * Dh) * sizeof(bf16));
    memset_zero(dv, static_cast<std::size_t>(B * Tk * H * Dh) * sizeof(bf16));
    return;
  }
  attention_backward_bf16(dq, dk, dv, scratch, dout, probs, q, k, v, keep_mask, keep_scale, B, H,
                          Tq, Tk, Dh);
}

void attention_forward(float* out, float* probs, const float* q, const float* k, const float* v,
                       const std::int32_t* kv_len, const std::uint8_t* keep_mask, float keep_scale,
                       i64 B, i64 H, i64 Tq, i64 Tk, i64 Dh, bool causal, i64 q_offset) {
  const i64 rows = B * H * Tq, pairs = B * H;
  if (rows <= 0) return;
  if (Tk <= 0) {  // no keys: a zero output, as the CPU
    zero_floats(out, B * Tq * H * Dh);
    return;
  }
  if (bf16_matmuls())
    return attention_forward_bf16(out, probs, q, k, v, kv_len, keep_mask, keep_scale, B, H, Tq, Tk,
                                  Dh, causal, q_offset);
  const i64 nq = B * Tq * H * Dh, nk = B * Tk * H * Dh;
  StreamScratch heads((2 * nq + 2 * nk) * sizeof(float));
  float* qh = heads.as<float>();
  float* kh = qh + nq;
  float* vh = kh + nk;
  float* oh = vh + nk;
  {
    OpTimer part("attention_forward: heads gathered");
    swap_middle(qh, q, B, Tq, H, Dh);
    swap_middle(kh, k, B, Tk, H, Dh);
    swap_middle(vh, v, B, Tk, H, Dh);
  }
  {
    OpTimer part("attention_forward: q k^T");  // S = scale q k^T per (b, h), into probs
    gemm_strided_batched(false, true, Tq, Tk, Dh, attention_scale(Dh), qh, Dh, Tq * Dh, kh, Dh,
                         Tk * Dh, 0.0f, probs, Tk, Tq * Tk, pairs);
  }
  StreamScratch dropped_buf(keep_mask ? static_cast<std::size_t>(rows * Tk) * sizeof(float) : 0);
  float* dropped = keep_mask ? dropped_buf.as<float>() : nullptr;
  {
    OpTimer part("attention_forward: softmax");
    softmax_rows_kernel<<<row_blocks(rows), kRowBlockThreads, 0, compute_stream()>>>(
        probs, dropped, nullptr, kv_len, keep_mask, keep_scale, rows, H, Tq, Tk, causal, q_offset);
    TR_CUDA_LAUNCH_CHECK();
  }
  OpTimer part("attention_forward: P v, heads scattered");
  // out = dropped(P) v per (b, h), then back to [B, Tq, H, Dh].
  gemm_strided_batched(false, false, Tq, Dh, Tk, 1.0f, dropped ? dropped : probs, Tk, Tq * Tk, vh,
                       Dh, Tk * Dh, 0.0f, oh, Dh, Tq * Dh, pairs);
  swap_middle(out, oh, B, H, Tq, Dh);
}

void attention_backward(float* dq, float* dk, float* dv, float* scratch, const float* dout,
                        const float* probs, const float* q, const float* k, const float* v,
                        const std::uint8_t* keep_mask, float keep_scale, i64 B, i64 H, i64 Tq,
                        i64 Tk, i64 Dh) {
  const i64 rows = B * H * Tq, pairs = B * H;
  const i64 nq = B * Tq * H * Dh, nk = B * Tk * H * Dh;
  if (rows <= 0 && nk <= 0) return;
  if (rows <= 0 || Tk <= 0) {  // nothing flows: zero gradients
    zero_floats(dq, nq);
    zero_floats(dk, nk);
    zero_floats(dv, nk);
    return;
  }
  if (bf16_matmuls())
    return attention_backward_bf16(dq, dk, dv, scratch, dout, probs, q, k, v, keep_mask, keep_scale,
                                   B, H, Tq, Tk, Dh);
  const float scale = attention_scale(Dh);
  // Head-major copies of q, k, v, dout and the head-major gradients.
  StreamScratch heads((3 * nq + 4 * nk) * sizeof(float));
  float* qh = heads.as<float>();
  float* gh = qh + nq;  // dout
  float* dqh = gh + nq;
  float* kh = dqh + nq;
  float* vh = kh + nk;
  float* dkh = vh + nk;
  float* dvh = dkh + nk;
  {
    OpTimer part("attention_backward: heads gathered");
    swap_middle(qh, q, B, Tq, H, Dh);
    swap_middle(gh, dout, B, Tq, H, Dh);
    swap_middle(kh, k, B, Tk, H, Dh);
    swap_middle(vh, v, B, Tk, H, Dh);
  }
  // dv = dropped(P)^T dout
  {
    OpTimer part("attention_backward: dv");
    StreamScratch dropped_buf(keep_mask ? static_cast<std::size_t>(rows * Tk) * sizeof(float) : 0);
    const float* p = probs;
    if (keep_mask) {
      apply_keep_kernel<<<grid_for(rows * Tk), kThreads, 0, compute_stream()>>>(
          dropped_buf.as<float>(), probs, keep_mask, keep_scale, rows * Tk);
      TR_CUDA_LAUNCH_CHECK();
      p = dropped_buf.as<float>();
    }
    gemm_strided_batched(true, false, Tk, Dh, Tq, 1.0f, p, Tk, Tq * Tk, gh, Dh, Tq * Dh, 0.0f, dvh,
                         Dh, Tk * Dh, pairs);
  }
  // d(dropped P) = dout v^T, then back through the mask and the softmax.
  {
    OpTimer part("attention_backward: dout v^T");
    gemm_strided_batched(false, true, Tq, Tk, Dh, 1.0f, gh, Dh, Tq * Dh, vh, Dh, Tk * Dh, 0.0f,
                         scratch, Tk, Tq * Tk, pairs);
  }
  {
    OpTimer part("attention_backward: softmax");
    softmax_grad_rows_kernel<<<row_blocks(rows), kRowBlockThreads, 0, compute_stream()>>>(
        scratch, nullptr, probs, keep_mask, keep_scale, rows, Tk);
    TR_CUDA_LAUNCH_CHECK();
  }
  OpTimer part("attention_backward: dq, dk, heads scattered");
  // dq = scale dS k;  dk = scale dS^T q.
  gemm_strided_batched(false, false, Tq, Dh, Tk, scale, scratch, Tk, Tq * Tk, kh, Dh, Tk * Dh, 0.0f,
                       dqh, Dh, Tq * Dh, pairs);
  gemm_strided_batched(true, false, Tk, Dh, Tq, scale, scratch, Tk, Tq * Tk, qh, Dh, Tq * Dh, 0.0f,
                       dkh, Dh, Tk * Dh, pairs);
  swap_middle(dq, dqh, B, H, Tq, Dh);
  swap_middle(dk, dkh, B, H, Tk, Dh);
  swap_middle(dv, dvh, B, H, Tk, Dh);
}

}  // namespace tr::cuda
