// Elementwise kernels, dropout, AdamW, embedding and the bf16 conversions: the launches of
// elementwise_kernels.cuh and embedding_kernels.cuh.
#include <cuda_bf16.h>

#include <cmath>
#include <vector>

#include "layers/cpu/adamw_step.h"
#include "layers/cpu/philox.h"
#include "layers/cuda/column_sums.cuh"
#include "layers/cuda/elementwise_kernels.cuh"
#include "layers/cuda/embedding_grad.cuh"
#include "layers/cuda/embedding_kernels.cuh"
#include "layers/cuda/kernels.h"
#include "layers/cuda/launch.cuh"

namespace tr::cuda {

using namespace elementwise;
using namespace embed;

#define TR_LAUNCH(kernel, n, ...)                                        \
  do {                                                                   \
    if ((n) <= 0) return;                                                \
    kernel<<<grid_for(n), kThreads, 0, compute_stream()>>>(__VA_ARGS__); \
    TR_CUDA_LAUNCH_CHECK();                                              \
  } while (0)

void f32_to_bf16(bf16* out, const float* in, i64 n) {
  TR_LAUNCH(f32_to_bf16_kernel, n, reinterpret_cast<__nv_bfloat16*>(out), in, n);
}
void bf16_to_f32(float* out, const bf16* in, i64 n) {
  TR_LAUNCH(bf16_to_f32_kernel, n, out, reinterpret_cast<const __nv_bfloat16*>(in), n);
}
// A block per row (the kernels' comment): launched as TR_LAUNCH does, with grid_for_rows.
#define TR_LAUNCH_ROWS(kernel, rows, cols, ...)                                  \
  do {                                                                           \
    if ((rows) * (cols) <= 0) return;                                            \
    kernel<<<grid_for_rows(rows), kThreads, 0, compute_stream()>>>(__VA_ARGS__); \
    TR_CUDA_LAUNCH_CHECK();                                                      \
  } while (0)

void bias_add(float* out, const float* in, const float* bias, i64 rows, i64 cols) {
  TR_LAUNCH_ROWS(bias_add_kernel, rows, cols, out, in, bias, rows, cols);
}
void bias_fill(float* out, const float* bias, i64 rows, i64 cols) {
  TR_LAUNCH_ROWS(bias_fill_kernel, rows, cols, out, bias, rows, cols);
}
void bias_backward_accumulate(float* dbias, const float* dout, i64 rows, i64 cols) {
  column_sums_accumulate<1>({dbias}, BiasTerms<float>{dout, cols}, rows, cols);
}
void bias_backward_accumulate(float* dbias, const bf16* dout, i64 rows, i64 cols) {
  column_sums_accumulate<1>({dbias}, BiasTerms<bf16>{dout, cols}, rows, cols);
}
void add(float* out, const float* a, const float* b, i64 n) {
  TR_LAUNCH(add_kernel<float>, n, out, a, b, n);
}
void add(float* out, const float* a, const bf16* b, i64 n) {
  TR_LAUNCH(add_kernel<bf16>, n, out, a, b, n);
}
void add_accumulate(float* out, const float* a, i64 n) {
  TR_LAUNCH(add_accumulate_kernel, n, out, a, n);
}
void scale(float* out, const float* in, float alpha, i64 n) {
  TR_LAUNCH(scale_kernel, n, out, in, alpha, n);
}
void gelu_forward(float* out, const float* in, i64 n) {
  TR_LAUNCH(gelu_forward_kernel<float>, n, out, in, n);
}
void gelu_forward(bf16* out, const bf16* in, i64 n) {
  TR_LAUNCH(gelu_forward_kernel<bf16>, bf16_vector_threads(n, out, in), out, in, n);
}
// The forward output is not needed here: erff costs about as much as the division the CPU
// uses to avoid it.
void gelu_backward(float* din, const float* dout, const float* in, i64 n, const float*) {
  TR_LAUNCH(gelu_backward_kernel<float>, n, din, dout, in, n);
}
void gelu_backward(bf16* din, const bf16* dout, const bf16* in, i64 n) {
  TR_LAUNCH(gelu_backward_kernel<bf16>, bf16_vector_threads(n, din, dout, in), din, dout, in, n);
}
// The tanh GELU's kernels by name: a template argument list's comma would split TR_LAUNCH's
// arguments.
constexpr auto* gelu_tanh_forward_f32 = &gelu_forward_kernel<float, true>;
constexpr auto* gelu_tanh_forward_bf16 = &gelu_forward_kernel<bf16, true>;
constexpr auto* gelu_tanh_backward_f32 = &gelu_backward_kernel<float, true>;
constexpr auto* gelu_tanh_backward_bf16 = &gelu_backward_kernel<bf16, true>;
void gelu_tanh_forward(float* out, const float* in, i64 n) {
  TR_LAUNCH(gelu_tanh_forward_f32, n, out, in, n);
}
void gelu_tanh_forward(bf16* out, const bf16* in, i64 n) {
  TR_LAUNCH(gelu_tanh_forward_bf16, bf16_vector_threads(n, out, in), out, in, n);
}
void gelu_tanh_backward(float* din, const float* dout, const float* in, i64 n) {
  TR_LAUNCH(gelu_tanh_backward_f32, n, din, dout, in, n);
}
void gelu_tanh_backward(bf16* din, const bf16* dout, const bf16* in, i64 n) {
  TR_LAUNCH(gelu_tanh_backward_bf16, bf16_vector_threads(n, din, dout, in), din, dout, in, n);
}
void relu_forward(float* out, const float* in, i64 n) {
  TR_LAUNCH(relu_forward_kernel<float>, n, out, in, n);
}
void relu_forward(bf16* out, const bf16* in, i64 n) {
  TR_LAUNCH(relu_forward_kernel<bf16>, n, out, in, n);
}
void relu_backward(float* din, const float* dout, const float* in, i64 n) {
  TR_LAUNCH(relu_backward_kernel<float>, n, din, dout, in, n);
}
void relu_backward(bf16* din, const bf16* dout, const bf16* in, i64 n) {
  TR_LAUNCH(relu_backward_kernel<bf16>, n, din, dout, in, n);
}

void dropout_mask(std::uint8_t* keep, i64 n, float p, std::uint64_t seed, std::uint64_t stream,
                  std::uint64_t offset) {
  if (n <= 0) return;
  const std::uint32_t threshold = cpu::dropout_keep_threshold(p);
  const std::uint64_t first = offset >> 2;
  const std::uint64_t last = (offset + static_cast<std::uint64_t>(n) - 1) >> 2;
  const i64 blocks = static_cast<i64>(last - first + 1);
  TR_LAUNCH(dropout_mask_kernel, blocks, keep, n, threshold, seed, stream, offset, first, blocks);
}
void dropout_mask_strided(std::uint8_t* keep, i64 rows, i64 K, const DropoutLayout& layout, float p,
                          std::uint64_t seed, std::uint64_t stream, std::uint64_t offset) {
  TR_CHECK(layout.n >= 0 && layout.n <= 4, "dropout_mask_strided: at most 4 leading dimensions");
  if (K <= 0) return;
  TR_LAUNCH(dropout_mask_strided_kernel, dropout_strided_threads(rows, K), keep, rows, K, layout,
            cpu::dropout_keep_threshold(p), seed, stream, offset);
}
void dropout_apply(float* out, const float* in, const std::uint8_t* keep, float scale, i64 n) {
  TR_LAUNCH(dropout_apply_kernel<float>, n, out, in, keep, scale, n);
}
void dropout_apply(bf16* out, const bf16* in, const std::uint8_t* keep, float scale, i64 n) {
  TR_LAUNCH(dropout_apply_kernel<bf16>, n, out, in, keep, scale, n);
}
void dropout_add(float* out, const float* skip, const float* in, const std::uint8_t* keep,
                 float scale, i64 n) {
  TR_LAUNCH(dropout_add_kernel<float>, n, out, skip, in, keep, scale, n);
}
void dropout_add(float* out, const float* skip, const bf16* in, const std::uint8_t* keep,
                 float scale, i64 n) {
  TR_LAUNCH(dropout_add_kernel<bf16>, n, out, skip, in, keep, scale, n);
}

void adamw_update(float* param, const float* grad, float* m, float* v, i64 n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, i64 step) {
  TR_LAUNCH(adamw_kernel, n, param, grad, m, v, n,
            cpu::adamw_constants(lr, beta1, beta2, eps, weight_decay, step));
}

void sgd_update(float* param, const float* grad, float* momentum_buf, i64 n, float lr,
                float momentum, float weight_decay, bool first_step) {
  TR_LAUNCH(sgd_kernel, n, param, grad, momentum == 0.0f ? nullptr : momentum_buf, n, -lr, momentum,
            weight_decay, first_step);
}

void embedding_forward(float* out, const std::int32_t* ids, const float* table, i64 N, i64 d,
                       float scale) {
  TR_LAUNCH_ROWS(embedding_forward_kernel, N, d, out, ids, table, N, d, scale);
}
void embedding_backward_accumulate(float* dtable, const std::int32_t* ids, const float* dout, i64 N,
                                   i64 d, float scale) {
  embedding_rows_backward(dtable, ids, dout, N, d, 0, INT64_MAX, scale);
}

void sum_squares_each(double* out, const float* const* xs, const i64* ns, i64 count) {
  if (count <= 0) return;
  // One block of kSumBlocks partials per tensor, each summed on the host in block order.
  const std::size_t slots = static_cast<std::size_t>(count) * kSumBlocks;
  const StreamScratch partials(slots * sizeof(double));
  double* partial = partials.as<double>();
  for (i64 k = 0; k < count; ++k) {
    if (ns[k] <= 0) continue;
    sum_squares_kernel<<<kSumBlocks, kThreads, 0, compute_stream()>>>(partial + k * kSumBlocks,
                                                                      xs[k], ns[k]);
    TR_CUDA_LAUNCH_CHECK();
  }
  std::vector<double> host(slots);
  TR_CUDA_CHECK(cudaMemcpyAsync(host.data(), partial, slots * sizeof(double),
                                cudaMemcpyDeviceToHost, compute_stream()));
  TR_CUDA_CHECK(cudaStreamSynchronize(compute_stream()));
  for (i64 k = 0; k < count; ++k) {
    double s = 0;
    if (ns[k] > 0)
      for (int b = 0; b < kSumBlocks; ++b) s += host[static_cast<std::size_t>(k) * kSumBlocks + b];
    out[k] = s;
  }
}

double sum_squares(const float* x, i64 n) {
  if (n <= 0) return 0.0;
  double s = 0;
  sum_squares_each(&s, &x, &n, 1);
  return s;
}

}  // namespace tr::cuda
