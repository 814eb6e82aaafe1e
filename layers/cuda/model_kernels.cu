// Kernels of layers/cuda/model_kernels.h: the launches of model_kernels.cuh.
#include "layers/cuda/launch.cuh"
#include "layers/cuda/model_kernels.cuh"
#include "layers/cuda/model_kernels.h"

namespace tr::cuda {

using namespace model;

void images_to_patches(float* patches, const float* images, i64 B, i64 C, i64 H, i64 W, i64 P) {
  const i64 n = B * C * H * W;
  if (n == 0) return;
  images_to_patches_kernel<<<grid_for(n), kThreads, 0, compute_stream()>>>(patches, images, B, C, H,
                                                                           W, P);
  TR_CUDA_LAUNCH_CHECK();
}

void add_position_rows(float* x, const float* table, i64 B, i64 Tn, i64 d, i64 offset) {
  const i64 n = B * Tn * d;
  if (n == 0) return;
  add_position_rows_kernel<<<grid_for(n), kThreads, 0, compute_stream()>>>(x, table, B, Tn, d,
                                                                           offset);
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
  const i64 n = B * (N + 1) * d;
  if (n == 0) return;
  assemble_tokens_kernel<<<grid_for(n), kThreads, 0, compute_stream()>>>(tokens, patches, cls, pos,
                                                                         B, N, d);
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
  take_first_rows_kernel<<<grid_for(B * d), kThreads, 0, compute_stream()>>>(out, x, B, rows, d);
  TR_CUDA_LAUNCH_CHECK();
}

void put_first_rows(float* dx, const float* dcls, i64 B, i64 rows, i64 d) {
  const i64 n = B * rows * d;
  if (n == 0) return;
  put_first_rows_kernel<<<grid_for(n), kThreads, 0, compute_stream()>>>(dx, dcls, B, rows, d);
  TR_CUDA_LAUNCH_CHECK();
}

}  // namespace tr::cuda
