// Multi-head attention, own kernels: a block per query row computes its scores, softmax (scale
// and mask applied) and output; the backward splits into a row pass (dS) and column passes
// (dq; dk and dv), each output written by one thread summing in a fixed order. Correct and
// deterministic rather than fast: the fused flash-style kernel or cuDNN's SDPA replaces it.
#include <cmath>

#include "layers/cuda/kernels.h"
#include "layers/cuda/launch.cuh"

namespace tr::cuda {

namespace {

constexpr int kAttnThreads = 128;

__device__ i64 clamp_i64(i64 x, i64 lo, i64 hi) {
  return x < lo ? lo : (x > hi ? hi : x);
}

// Keys visible to query i: below kv, and up to i + q_offset when causal (as the CPU).
__device__ i64 key_limit(i64 kv, i64 i, bool causal, i64 q_offset) {
  return causal ? clamp_i64(i + q_offset + 1, 0, kv) : kv;
}

__device__ float dropped(float p, const std::uint8_t* keep, i64 idx, float keep_scale) {
  return keep ? (keep[idx] ? p * keep_scale : 0.0f) : p;
}

__global__ void attention_forward_kernel(float* out, float* probs, const float* q, const float* k,
                                         const float* v, const std::int32_t* kv_len,
                                         const std::uint8_t* keep, float keep_scale, i64 H, i64 Tq,
                                         i64 Tk, i64 Dh, bool causal, i64 q_offset, float scale) {
  __shared__ float shared[kAttnThreads / 32];
  const i64 row = blockIdx.x;  // (b, h, i)
  const i64 i = row % Tq, h = (row / Tq) % H, b = row / (Tq * H);
  const i64 ld = H * Dh;
  const i64 kv = kv_len ? clamp_i64(kv_len[b], 0, Tk) : Tk;
  const i64 limit = key_limit(kv, i, causal, q_offset);
  const float* qi = q + (b * Tq + i) * ld + h * Dh;
  float* p = probs + row * Tk;
  float mx = -INFINITY;
  for (i64 j = threadIdx.x; j < limit; j += blockDim.x) {
    const float* kj = k + (b * Tk + j) * ld + h * Dh;
    float s = 0;
    for (i64 d = 0; d < Dh; ++d) s += qi[d] * kj[d];
    p[j] = s * scale;
    mx = fmaxf(mx, p[j]);
  }
  mx = block_max(mx, shared);
  float sum = 0;
  for (i64 j = threadIdx.x; j < limit; j += blockDim.x) {
    p[j] = expf(p[j] - mx);
    sum += p[j];
  }
  sum = block_sum(sum, shared);
  const float inv = limit > 0 ? 1.0f / sum : 0.0f;
  // A query with no visible key gets zero probabilities (and output), not NaN.
  for (i64 j = threadIdx.x; j < Tk; j += blockDim.x) p[j] = j < limit ? p[j] * inv : 0.0f;
  __syncthreads();
  float* oi = out + (b * Tq + i) * ld + h * Dh;
  for (i64 d = threadIdx.x; d < Dh; d += blockDim.x) {
    float acc = 0;
    for (i64 j = 0; j < limit; ++j)
      acc += dropped(p[j], keep, row * Tk + j, keep_scale) * v[(b * Tk + j) * ld + h * Dh + d];
    oi[d] = acc;
  }
}

// ds[i, j] = P[i, j] (dP[i, j] - sum_j dP P), dP = dropout'(dout_i . v_j).
__global__ void attention_ds_kernel(float* ds, const float* dout, const float* probs,
                                    const float* v, const std::uint8_t* keep, float keep_scale,
                                    i64 H, i64 Tq, i64 Tk, i64 Dh) {
  __shared__ float shared[kAttnThreads / 32];
  const i64 row = blockIdx.x;
  const i64 i = row % Tq, h = (row / Tq) % H, b = row / (Tq * H);
  const i64 ld = H * Dh;
  const float* gi = dout + (b * Tq + i) * ld + h * Dh;
  const float* p = probs + row * Tk;
  float* dsr = ds + row * Tk;
  float dot = 0;
  for (i64 j = threadIdx.x; j < Tk; j += blockDim.x) {
    const float* vj = v + (b * Tk + j) * ld + h * Dh;
    float dp = 0;
    for (i64 d = 0; d < Dh; ++d) dp += gi[d] * vj[d];
    dp = keep ? (keep[row * Tk + j] ? dp * keep_scale : 0.0f) : dp;
    dsr[j] = dp;
    dot += dp * p[j];
  }
  dot = block_sum(dot, shared);
  for (i64 j = threadIdx.x; j < Tk; j += blockDim.x) dsr[j] = p[j] * (dsr[j] - dot);
}

// dq[b, i, h, d] = scale * sum_j ds[i, j] k[j, d]
__global__ void attention_dq_kernel(float* dq, const float* ds, const float* k, i64 B, i64 H,
                                    i64 Tq, i64 Tk, i64 Dh, float scale) {
  TR_GRID_STRIDE(idx, B * Tq * H * Dh) {
    const i64 d = idx % Dh, h = (idx / Dh) % H, i = (idx / (Dh * H)) % Tq, b = idx / (Dh * H * Tq);
    const float* dsr = ds + ((b * H + h) * Tq + i) * Tk;
    float acc = 0;
    for (i64 j = 0; j < Tk; ++j) acc += dsr[j] * k[(b * Tk + j) * H * Dh + h * Dh + d];
    dq[idx] = acc * scale;
  }
}

// dk[b, j, h, d] = scale * sum_i ds[i, j] q[i, d];  dv[b, j, h, d] = sum_i dropped(P)[i, j] dout[i,
// d]
__global__ void attention_dkdv_kernel(float* dk, float* dv, const float* ds, const float* probs,
                                      const float* q, const float* dout, const std::uint8_t* keep,
                                      float keep_scale, i64 B, i64 H, i64 Tq, i64 Tk, i64 Dh,
                                      float scale) {
  TR_GRID_STRIDE(idx, B * Tk * H * Dh) {
    const i64 d = idx % Dh, h = (idx / Dh) % H, j = (idx / (Dh * H)) % Tk, b = idx / (Dh * H * Tk);
    const i64 head = (b * H + h) * Tq * Tk;
    float ak = 0, av = 0;
    for (i64 i = 0; i < Tq; ++i) {
      const i64 qo = (b * Tq + i) * H * Dh + h * Dh + d;
      const i64 pi = head + i * Tk + j;
      ak += ds[pi] * q[qo];
      av += dropped(probs[pi], keep, pi, keep_scale) * dout[qo];
    }
    dk[idx] = ak * scale;
    dv[idx] = av;
  }
}

float attention_scale(i64 Dh) {
  return static_cast<float>(1.0 / std::sqrt(static_cast<double>(Dh)));
}

}  // namespace

void attention_forward(float* out, float* probs, const float* q, const float* k, const float* v,
                       const std::int32_t* kv_len, const std::uint8_t* keep_mask, float keep_scale,
                       i64 B, i64 H, i64 Tq, i64 Tk, i64 Dh, bool causal, i64 q_offset) {
  const i64 rows = B * H * Tq;
  if (rows <= 0) return;
  attention_forward_kernel<<<static_cast<unsigned>(rows), kAttnThreads, 0, compute_stream()>>>(
      out, probs, q, k, v, kv_len, keep_mask, keep_scale, H, Tq, Tk, Dh, causal, q_offset,
      attention_scale(Dh));
  TR_CUDA_LAUNCH_CHECK();
}

void attention_backward(float* dq, float* dk, float* dv, float* scratch, const float* dout,
                        const float* probs, const float* q, const float* k, const float* v,
                        const std::uint8_t* keep_mask, float keep_scale, i64 B, i64 H, i64 Tq,
                        i64 Tk, i64 Dh) {
  const i64 rows = B * H * Tq;
  if (rows <= 0) return;
  const float scale = attention_scale(Dh);
  attention_ds_kernel<<<static_cast<unsigned>(rows), kAttnThreads, 0, compute_stream()>>>(
      scratch, dout, probs, v, keep_mask, keep_scale, H, Tq, Tk, Dh);
  TR_CUDA_LAUNCH_CHECK();
  attention_dq_kernel<<<grid_for(B * Tq * H * Dh), kThreads, 0, compute_stream()>>>(
      dq, scratch, k, B, H, Tq, Tk, Dh, scale);
  TR_CUDA_LAUNCH_CHECK();
  if (B * Tk * H * Dh <= 0) return;
  attention_dkdv_kernel<<<grid_for(B * Tk * H * Dh), kThreads, 0, compute_stream()>>>(
      dk, dv, scratch, probs, q, dout, keep_mask, keep_scale, B, H, Tq, Tk, Dh, scale);
  TR_CUDA_LAUNCH_CHECK();
}

}  // namespace tr::cuda
