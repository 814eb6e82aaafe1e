// Multi-head attention on CUDA: the heads are gathered into [B, H, T, Dh] blocks (one cheap
// permutation each way), so that each product is one strided-batched cuBLASLt call over all
// (batch, head) pairs; softmax, masks and dropout, and the softmax gradient run one warp per
// score row. Scores and probabilities are materialised ([B, H, Tq, Tk], kept for backward as
// the CPU does): not flash-style (cuDNN's fused SDPA is not used yet).
#include <cmath>

#include "layers/cuda/kernels.h"
#include "layers/cuda/launch.cuh"
#include "layers/op_profile.h"

namespace tr::cuda {

namespace {

constexpr int kRowWarps = 8;  // score rows per block of the row kernels

__device__ i64 clamp_i64(i64 x, i64 lo, i64 hi) {
  return x < lo ? lo : (x > hi ? hi : x);
}

__device__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// out[b, y, x, :] = in[b, x, y, :] for in [B, X, Y, D]: heads out of / back into the
// projection layout ([B, T, H, Dh] <-> [B, H, T, Dh]). Moved as float4 where D allows and in
// 32-bit index arithmetic where the size allows: the 64-bit divisions of a per-float version
// made it run at a third of the copy bandwidth (the H100 profile).
template <typename V, typename I>
__global__ void swap_middle_kernel(V* out, const V* in, I B, I X, I Y, I D) {
  const I n = B * X * Y * D;
  for (I idx = blockIdx.x * static_cast<I>(blockDim.x) + threadIdx.x; idx < n;
       idx += static_cast<I>(blockDim.x) * gridDim.x) {
    const I d = idx % D, rest = idx / D;
    const I y = rest % Y, rest2 = rest / Y;
    const I x = rest2 % X, b = rest2 / X;
    out[((b * Y + y) * X + x) * D + d] = in[idx];
  }
}

template <typename V, typename I>
void launch_swap_middle(V* out, const V* in, i64 B, i64 X, i64 Y, i64 D) {
  swap_middle_kernel<V, I><<<grid_for(B * X * Y * D), kThreads, 0, compute_stream()>>>(
      out, in, static_cast<I>(B), static_cast<I>(X), static_cast<I>(Y), static_cast<I>(D));
  TR_CUDA_LAUNCH_CHECK();
}

void swap_middle(float* out, const float* in, i64 B, i64 X, i64 Y, i64 D) {
  const i64 n = B * X * Y * D;
  if (n <= 0) return;
  const bool by_four = D % 4 == 0 && reinterpret_cast<std::uintptr_t>(out) % 16 == 0 &&
                       reinterpret_cast<std::uintptr_t>(in) % 16 == 0;
  const bool small = n < (i64{1} << 31);
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

void zero_floats(float* p, i64 n) {
  if (n > 0)
    TR_CUDA_CHECK(
        cudaMemsetAsync(p, 0, static_cast<std::size_t>(n) * sizeof(float), compute_stream()));
}

// Scores (already scaled) to probabilities in place, row (b, h, i) per warp: keys j >= kv_len[b]
// and, when causal, j > i + q_offset get exactly 0; a row with no visible key is all 0.
// `dropped` (when not null) receives probs * keep * keep_scale, the operand of the PV product.
__global__ void softmax_rows_kernel(float* probs, float* dropped, const std::int32_t* kv_len,
                                    const std::uint8_t* keep, float keep_scale, i64 rows, i64 H,
                                    i64 Tq, i64 Tk, bool causal, i64 q_offset) {
  const i64 row = blockIdx.x * static_cast<i64>(kRowWarps) + threadIdx.x / 32;
  if (row >= rows) return;
  const int lane = threadIdx.x & 31;
  const i64 i = row % Tq, b = row / (Tq * H);
  const i64 kv = kv_len ? clamp_i64(kv_len[b], 0, Tk) : Tk;
  const i64 limit = causal ? clamp_i64(i + q_offset + 1, 0, kv) : kv;
  float* p = probs + row * Tk;
  float mx = -INFINITY;
  for (i64 j = lane; j < limit; j += 32) mx = fmaxf(mx, p[j]);
  mx = warp_max(mx);
  float sum = 0;
  for (i64 j = lane; j < limit; j += 32) {
    const float e = expf(p[j] - mx);
    p[j] = e;
    sum += e;
  }
  sum = warp_sum(sum);
  const float inv = limit > 0 ? 1.0f / sum : 0.0f;
  for (i64 j = lane; j < Tk; j += 32) {
    const float v = j < limit ? p[j] * inv : 0.0f;
    p[j] = v;
    if (dropped) dropped[row * Tk + j] = keep[row * Tk + j] ? v * keep_scale : 0.0f;
  }
}

// dropped = probs * keep * keep_scale (backward's dV operand).
__global__ void apply_keep_kernel(float* dropped, const float* probs, const std::uint8_t* keep,
                                  float keep_scale, i64 n) {
  TR_GRID_STRIDE(i, n) dropped[i] = keep[i] ? probs[i] * keep_scale : 0.0f;
}

// ds holds d(dropped P) = dout v^T; becomes dS = P * (dP - rowsum(dP * P)), dP = d(dropped P)
// through the mask.
__global__ void softmax_grad_rows_kernel(float* ds, const float* probs, const std::uint8_t* keep,
                                         float keep_scale, i64 rows, i64 Tk) {
  const i64 row = blockIdx.x * static_cast<i64>(kRowWarps) + threadIdx.x / 32;
  if (row >= rows) return;
  const int lane = threadIdx.x & 31;
  float* d = ds + row * Tk;
  const float* p = probs + row * Tk;
  float dot = 0;
  for (i64 j = lane; j < Tk; j += 32) {
    float g = d[j];
    if (keep) g = keep[row * Tk + j] ? g * keep_scale : 0.0f;
    d[j] = g;
    dot += g * p[j];
  }
  dot = warp_sum(dot);
  for (i64 j = lane; j < Tk; j += 32) d[j] = p[j] * (d[j] - dot);
}

unsigned row_blocks(i64 rows) {
  return static_cast<unsigned>((rows + kRowWarps - 1) / kRowWarps);
}

float attention_scale(i64 Dh) {
  return static_cast<float>(1.0 / std::sqrt(static_cast<double>(Dh)));
}

}  // namespace

void attention_forward(float* out, float* probs, const float* q, const float* k, const float* v,
                       const std::int32_t* kv_len, const std::uint8_t* keep_mask, float keep_scale,
                       i64 B, i64 H, i64 Tq, i64 Tk, i64 Dh, bool causal, i64 q_offset) {
  const i64 rows = B * H * Tq, pairs = B * H;
  if (rows <= 0) return;
  if (Tk <= 0) {  // no keys: a zero output, as the CPU
    zero_floats(out, B * Tq * H * Dh);
    return;
  }
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
    softmax_rows_kernel<<<row_blocks(rows), kRowWarps * 32, 0, compute_stream()>>>(
        probs, dropped, kv_len, keep_mask, keep_scale, rows, H, Tq, Tk, causal, q_offset);
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
    softmax_grad_rows_kernel<<<row_blocks(rows), kRowWarps * 32, 0, compute_stream()>>>(
        scratch, probs, keep_mask, keep_scale, rows, Tk);
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
