// Flash attention on CUDA: the launches of layers/cuda/flash_attention_kernels.cuh (the
// algorithm and work split are described there).
#include <cmath>
#include <cstdint>
#include <initializer_list>

#include "layers/cuda/flash_attention_kernels.cuh"
#include "layers/cuda/kernels.h"
#include "layers/cuda/launch.cuh"
#include "layers/cuda/runtime.h"

namespace tr::cuda {

namespace {

using namespace flash;

bool aligned16(const void* ptr) {
  return reinterpret_cast<std::uintptr_t>(ptr) % 16 == 0;
}

// The Problem of a call, after the checks the kernels rely on.
Problem checked_problem(const bf16* q, const bf16* k, const bf16* v, const std::int32_t* kv_len,
                        const std::uint8_t* keep_mask, float keep_scale, i64 B, i64 H, i64 Tq,
                        i64 Tk, i64 Dh, bool causal, i64 q_offset,
                        std::initializer_list<const void*> others) {
  TR_CHECK(Dh > 0 && Dh <= kFlashMaxHeadDim, "flash attention: head width above 128");
  TR_CHECK(B * H < (i64{1} << 31) && Tq < (i64{1} << 30) && Tk < (i64{1} << 30),
           "flash attention: sizes beyond 32-bit indices");
  TR_CHECK(compute_capability() >= 80,
           "flash attention needs bf16 tensor cores (compute capability 8.0 or later)");
  bool vec = Dh % 8 == 0 && aligned16(q) && aligned16(k) && aligned16(v);
  for (const void* o : others) vec = vec && aligned16(o);
  return make_problem(q, k, v, kv_len, keep_mask, keep_scale, B, H, Tq, Tk, Dh, causal, q_offset,
                      vec);
}

// Kernels above 48 KiB of dynamic shared memory must say so once per instantiation.
template <typename Kernel>
void allow_smem(Kernel kernel, std::size_t bytes) {
  TR_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(bytes)));
}

template <int DHP>
void launch_forward(bfloat* out, float* lse, const Problem& p) {
  constexpr std::size_t smem = forward_smem<DHP>();
  static const bool once = (allow_smem(flash_forward_kernel<DHP>, smem), true);
  (void)once;
  const Grid g = query_grid(p);
  flash_forward_kernel<DHP><<<dim3(g.x, g.y), kFlashThreads, smem, compute_stream()>>>(out, lse, p);
  TR_CUDA_LAUNCH_CHECK();
}

template <int DHP>
void launch_backward(bfloat* dq, bfloat* dk, bfloat* dv, const bfloat* dout, const float* lse,
                     const float* rowdot, const Problem& p) {
  constexpr std::size_t smem = backward_smem<DHP>();
  static const bool once =
      (allow_smem(flash_dkdv_kernel<DHP>, smem), allow_smem(flash_dq_kernel<DHP>, smem), true);
  (void)once;
  if (p.Tk > 0) {
    const Grid g = key_grid(p);
    flash_dkdv_kernel<DHP>
        <<<dim3(g.x, g.y), kFlashThreads, smem, compute_stream()>>>(dk, dv, dout, lse, rowdot, p);
    TR_CUDA_LAUNCH_CHECK();
  }
  const Grid g = query_grid(p);
  flash_dq_kernel<DHP>
      <<<dim3(g.x, g.y), kFlashThreads, smem, compute_stream()>>>(dq, dout, lse, rowdot, p);
  TR_CUDA_LAUNCH_CHECK();
}

}  // namespace

void flash_attention_forward(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v,
                             const std::int32_t* kv_len, const std::uint8_t* keep_mask,
                             float keep_scale, i64 B, i64 H, i64 Tq, i64 Tk, i64 Dh, bool causal,
                             i64 q_offset) {
  if (B * H * Tq == 0) return;
  const Problem p = checked_problem(q, k, v, kv_len, keep_mask, keep_scale, B, H, Tq, Tk, Dh,
                                    causal, q_offset, {out});
  bfloat* o = reinterpret_cast<bfloat*>(out);
  switch (padded_head_dim(Dh)) {
    case 16: launch_forward<16>(o, lse, p); break;
    case 32: launch_forward<32>(o, lse, p); break;
    case 64: launch_forward<64>(o, lse, p); break;
    default: launch_forward<128>(o, lse, p); break;
  }
}

void flash_attention_backward(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* out,
                              const float* lse, const bf16* q, const bf16* k, const bf16* v,
                              const std::int32_t* kv_len, const std::uint8_t* keep_mask,
                              float keep_scale, i64 B, i64 H, i64 Tq, i64 Tk, i64 Dh, bool causal,
                              i64 q_offset) {
  if (B * H == 0) return;
  if (Tq == 0) {  // no query: nothing reaches the keys
    if (Tk > 0) {
      TR_CUDA_CHECK(cudaMemsetAsync(dk, 0, sizeof(bf16) * B * Tk * H * Dh, compute_stream()));
      TR_CUDA_CHECK(cudaMemsetAsync(dv, 0, sizeof(bf16) * B * Tk * H * Dh, compute_stream()));
    }
    return;
  }
  const Problem p = checked_problem(q, k, v, kv_len, keep_mask, keep_scale, B, H, Tq, Tk, Dh,
                                    causal, q_offset, {dq, dk, dv, dout, out});
  StreamScratch rowdot(sizeof(float) * B * H * Tq);
  const bfloat* d = reinterpret_cast<const bfloat*>(dout);
  row_dot_kernel<<<grid_for(B * H * Tq * 32), kThreads, 0, compute_stream()>>>(
      rowdot.as<float>(), d, reinterpret_cast<const bfloat*>(out), p);
  TR_CUDA_LAUNCH_CHECK();
  bfloat* gq = reinterpret_cast<bfloat*>(dq);
  bfloat* gk = reinterpret_cast<bfloat*>(dk);
  bfloat* gv = reinterpret_cast<bfloat*>(dv);
  switch (padded_head_dim(Dh)) {
    case 16: launch_backward<16>(gq, gk, gv, d, lse, rowdot.as<float>(), p); break;
    case 32: launch_backward<32>(gq, gk, gv, d, lse, rowdot.as<float>(), p); break;
    case 64: launch_backward<64>(gq, gk, gv, d, lse, rowdot.as<float>(), p); break;
    default: launch_backward<128>(gq, gk, gv, d, lse, rowdot.as<float>(), p); break;
  }
}

}  // namespace tr::cuda
