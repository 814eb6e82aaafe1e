// Kernels of layers/cuda/model_kernels.h: the launches of model_kernels.cuh.
#include <cstdint>

#include "layers/cuda/launch.cuh"
#include "layers/cuda/model_kernels.cuh"
#include "layers/cuda/model_kernels.h"

namespace tr::cuda {

using namespace model;

void images_to_patches(float* patches, const float* images, i64 B, i64 C, i64 H, i64 W, i64 P) {
  const i64 patches_count = B * (H / P) * (W / P);
  if (patches_count == 0 || C == 0) return;
  images_to_patches_kernel<<<grid_for_rows(patches_count), kThreads, 0, compute_stream()>>>(
      patches, images, B, C, H, W, P);
  TR_CUDA_LAUNCH_CHECK();
}

void add_position_rows(float* x, const float* table, i64 B, i64 Tn, i64 d, i64 offset) {
  if (B * Tn * d == 0) return;
  add_position_rows_kernel<<<grid_for_rows(B * Tn), kThreads, 0, compute_stream()>>>(x, table, B,
                                                                                     Tn, d, offset);
  TR_CUDA_LAUNCH_CHECK();
}

void sum_position_rows_accumulate(float* dtable, const float* dy, i64 B, i64 Tn, i64 d) {
  if (Tn * d == 0) return;
  sum_position_rows_kernel<<<grid_for(Tn * d), kThreads, 0, compute_stream()>>>(dtable, dy, B, Tn,
                                                                                d);
  TR_CUDA_LAUNCH_CHECK();
}

void vit_assemble_tokens(float* tokens, const float* patches, const float* cls, const float* pos,
                         i64 B, i64 N, i64 d) {
  if (B * (N + 1) * d == 0) return;
  assemble_tokens_kernel<<<grid_for_rows(B * (N + 1)), kThreads, 0, compute_stream()>>>(
      tokens, patches, cls, pos, B, N, d);
  TR_CUDA_LAUNCH_CHECK();
}

void vit_split_token_grads(float* dpatches, float* dcls, float* dpos, const float* dtokens, i64 B,
                           i64 N, i64 d) {
  const i64 n = (N + 1) * d;
  if (n == 0) return;
  split_token_grads_kernel<<<grid_for(n), kThreads, 0, compute_stream()>>>(dpatches, dcls, dpos,
                                                                           dtokens, B, N, d);
  TR_CUDA_LAUNCH_CHECK();
}

void take_first_rows(float* out, const float* x, i64 B, i64 rows, i64 d) {
  if (B * d == 0) return;
  take_first_rows_kernel<<<grid_for_rows(B), kThreads, 0, compute_stream()>>>(out, x, B, rows, d);
  TR_CUDA_LAUNCH_CHECK();
}

void put_first_rows(float* dx, const float* dcls, i64 B, i64 rows, i64 d) {
  if (B * rows * d == 0) return;
  put_first_rows_kernel<<<grid_for_rows(B * rows), kThreads, 0, compute_stream()>>>(dx, dcls, B,
                                                                                    rows, d);
  TR_CUDA_LAUNCH_CHECK();
}

void gather_rows(void* dst, std::size_t dst_pitch, const void* src, std::size_t src_pitch,
                 const std::int32_t* index, i64 rows, std::size_t bytes) {
  if (rows == 0 || bytes == 0) return;
  const auto word_aligned = [](std::uintptr_t x) { return x % 4 == 0; };
  if (word_aligned(reinterpret_cast<std::uintptr_t>(dst)) &&
      word_aligned(reinterpret_cast<std::uintptr_t>(src)) && word_aligned(dst_pitch) &&
      word_aligned(src_pitch) && word_aligned(bytes)) {
    const i64 words = static_cast<i64>(bytes / 4);
    gather_rows_kernel<std::uint32_t><<<grid_for(rows * words), kThreads, 0, compute_stream()>>>(
        static_cast<std::uint32_t*>(dst), static_cast<i64>(dst_pitch / 4),
        static_cast<const std::uint32_t*>(src), static_cast<i64>(src_pitch / 4), index, rows,
        words);
  } else {
    const i64 n = static_cast<i64>(bytes);
    gather_rows_kernel<unsigned char><<<grid_for(rows * n), kThreads, 0, compute_stream()>>>(
        static_cast<unsigned char*>(dst), static_cast<i64>(dst_pitch),
        static_cast<const unsigned char*>(src), static_cast<i64>(src_pitch), index, rows, n);
  }
  TR_CUDA_LAUNCH_CHECK();
}

}  // namespace tr::cuda
