// Row kernels: LayerNorm, softmax and cross entropy, the launches of rows_kernels.cuh (the
// kernels and their work split are described there).
#include <cmath>
#include <vector>

#include "layers/cuda/column_sums.cuh"
#include "layers/cuda/kernels.h"
#include "layers/cuda/launch.cuh"
#include "layers/cuda/rows_kernels.cuh"

namespace tr::cuda {

using namespace rowwise;

namespace {
bool g_one_pass_backward = true;  // set_layernorm_one_pass_backward

template <typename Out>
void layernorm_forward_as(Out* out, float* mean, float* rstd, const float* in, const float* weight,
                          const float* bias, i64 rows, i64 cols, float eps) {
  if (rows <= 0) return;
  layernorm_forward_kernel<Out><<<layernorm_grid(rows), kRowThreads, 0, compute_stream()>>>(
      out, mean, rstd, in, weight, bias, rows, cols, eps);
  TR_CUDA_LAUNCH_CHECK();
}
template <typename DOut>
void layernorm_backward_as(float* din, float* dweight, float* dbias, const DOut* dout,
                           const float* in, const float* weight, const float* mean,
                           const float* rstd, i64 rows, i64 cols, const float* residual) {
  if (rows <= 0) return;
  if (g_one_pass_backward && layernorm_backward_fuses(cols)) {
    const unsigned blocks = layernorm_fused_grid(rows);
    const StreamScratch partials(static_cast<std::size_t>(2 * blocks * cols) * sizeof(float));
    layernorm_backward_fused_kernel<DOut><<<blocks, kRowThreads, 0, compute_stream()>>>(
        din, partials.as<float>(), dout, in, weight, mean, rstd, residual, rows, cols);
    TR_CUDA_LAUNCH_CHECK();
    column_sums_accumulate<2>(
        {dweight, dbias}, LayerNormBlockPartials{partials.as<float>(), blocks, cols}, blocks, cols);
    return;
  }
  layernorm_din_kernel<DOut><<<layernorm_grid(rows), kRowThreads, 0, compute_stream()>>>(
      din, dout, in, weight, mean, rstd, residual, rows, cols);
  TR_CUDA_LAUNCH_CHECK();
  column_sums_accumulate<2>({dweight, dbias}, LayerNormParamTerms<DOut>{dout, in, mean, rstd, cols},
                            rows, cols);
}
}  // namespace

void layernorm_forward(float* out, float* mean, float* rstd, const float* in, const float* weight,
                       const float* bias, i64 rows, i64 cols, float eps) {
  layernorm_forward_as(out, mean, rstd, in, weight, bias, rows, cols, eps);
}
void layernorm_forward(bf16* out, float* mean, float* rstd, const float* in, const float* weight,
                       const float* bias, i64 rows, i64 cols, float eps) {
  layernorm_forward_as(out, mean, rstd, in, weight, bias, rows, cols, eps);
}

void set_layernorm_one_pass_backward(bool on) {
  g_one_pass_backward = on;
}
bool layernorm_one_pass_backward() {
  return g_one_pass_backward;
}

void layernorm_backward(float* din, float* dweight, float* dbias, const float* dout,
                        const float* in, const float* weight, const float* mean, const float* rstd,
                        i64 rows, i64 cols, const float* residual) {
  layernorm_backward_as(din, dweight, dbias, dout, in, weight, mean, rstd, rows, cols, residual);
}
void layernorm_backward(float* din, float* dweight, float* dbias, const bf16* dout, const float* in,
                        const float* weight, const float* mean, const float* rstd, i64 rows,
                        i64 cols, const float* residual) {
  layernorm_backward_as(din, dweight, dbias, dout, in, weight, mean, rstd, rows, cols, residual);
}

void softmax_forward(float* out, const float* in, i64 rows, i64 cols) {
  if (rows <= 0) return;
  softmax_forward_kernel<<<row_grid(rows), kRowThreads, 0, compute_stream()>>>(out, in, cols);
  TR_CUDA_LAUNCH_CHECK();
}

void softmax_backward(float* din, const float* dout, const float* out, i64 rows, i64 cols) {
  if (rows <= 0) return;
  softmax_backward_kernel<<<row_grid(rows), kRowThreads, 0, compute_stream()>>>(din, dout, out,
                                                                                cols);
  TR_CUDA_LAUNCH_CHECK();
}

void argmax_rows(std::int32_t* out, const float* x, i64 N, i64 V) {
  if (N <= 0) return;
  TR_CHECK(V > 0 && V < (i64{1} << 31), "argmax_rows: row width outside [1, 2^31)");
  argmax_rows_kernel<<<row_grid(N), kRowThreads, 0, compute_stream()>>>(out, x, V);
  TR_CUDA_LAUNCH_CHECK();
}

double cross_entropy_forward(float* loss, float* logsumexp, const float* logits,
                             const std::int32_t* targets, i64 N, i64 V, float eps,
                             std::int32_t ignore_index) {
  if (N <= 0) return 0.0;
  cross_entropy_forward_kernel<<<row_grid(N), kRowThreads, 0, compute_stream()>>>(
      loss, logsumexp, logits, targets, V, eps, ignore_index);
  TR_CUDA_LAUNCH_CHECK();
  // The total is a logged value: summed on the host in row order, as the CPU does.
  std::vector<float> host(static_cast<std::size_t>(N));
  TR_CUDA_CHECK(cudaMemcpyAsync(host.data(), loss, host.size() * sizeof(float),
                                cudaMemcpyDeviceToHost, compute_stream()));
  TR_CUDA_CHECK(cudaStreamSynchronize(compute_stream()));
  double total = 0;
  for (float l : host) total += static_cast<double>(l);
  return total;
}

void cross_entropy_backward(float* dlogits, const float* logits, const float* logsumexp,
                            const std::int32_t* targets, i64 N, i64 V, float eps,
                            std::int32_t ignore_index, float scale) {
  const float smooth = eps / static_cast<float>(V), hit = 1.0f - eps;
  if (N * V <= 0) return;
  cross_entropy_backward_kernel<<<row_grid(N), kRowThreads, 0, compute_stream()>>>(
      dlogits, logits, logsumexp, targets, V, smooth, hit, ignore_index, scale);
  TR_CUDA_LAUNCH_CHECK();
}

}  // namespace tr::cuda
