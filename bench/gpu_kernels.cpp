// bench/gpu_kernels: the CUDA kernels alone at the benchmark models' shapes (issue 6's GEMM,
// attention and LayerNorm figures), timed with CUDA events on the compute stream: each case
// runs --warmup times, then --reps times one by one, and the median counts. Inputs are random
// (never zeros: they run faster than real data). One JSON line per case:
//   {"kernel", "shape", "precision", "ms", "tflops" | "gbps"}
// GEMM: y = x w^T as a linear layer runs it (2MNK FLOPs), fp32, and bf16 with operands and
// output stored in bf16 (the bf16 activations' products; fp32 accumulation); attention: forward +
// backward, 12 B H T^2 Dh FLOPs (the six products), "attention" materialises the probabilities (the
// path with TR_FLASH_ATTENTION=0), "attention flash" is the flash kernels (the training path; fp32
// on the CUDA cores, bf16 on the tensor cores through mma.sync, the default; "attention flash
// wmma": the WMMA ones, TR_FLASH_KERNELS=wmma), "attention cudnn" cuDNN's fused engines (bf16; the
// training path where cuDNN is present), "... dropout": with dropout 0.1 on the probabilities
// (the encoder-decoder's training attention; PyTorch's row uses dropout_p 0.1; "attention cudnn
// fused dropout": the mask drawn inside cuDNN's kernels, train.attention_dropout: fused);
// LayerNorm: forward (x read, y written) and backward (dout and x read, din written) in GB/s, fp32,
// the backward in one pass (the default) and in two ("layernorm bwd 2-pass"); "linear dW+db": a
// linear layer's weight and bias gradients from bf16 dy and x, the bias gradient from the
// product's epilogue (the default) and from the column-sum kernel after it ("... 2-pass");
// "linear gelu_tanh fwd": a feed-forward layer's first product with the tanh GELU
// (model.activation: gelu_tanh), bf16, in cuBLASLt's GELU_AUX_BIAS epilogue (the default) and
// as the product then the GELU kernel ("... 2-pass"); "linear gelu_tanh bwd": the second
// layer's backward (input, weight and bias gradients), its input gradient carried through the
// GELU by the DGELU epilogue, or by the GELU kernel after the product ("... 2-pass");
// dropout mask: the attention probabilities' keep mask, in GB/s of mask bytes.
// bench/gpu_compare.py --kernels puts PyTorch's same operations beside them.
//
//   gpu_kernels [--reps 20] [--warmup 3] [--only TEXT]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "layers/cuda/check.h"
#include "layers/cuda/kernels.h"
#include "layers/cuda/runtime.h"

namespace {

using tr::cuda::i64;

int g_reps = 20, g_warmup = 3;

// A device buffer of n floats filled from a small LCG in [-1, 1).
struct DeviceFloats {
  float* p = nullptr;
  explicit DeviceFloats(i64 n, std::uint32_t seed = 1) {
    p = static_cast<float*>(tr::cuda::malloc_device(static_cast<std::size_t>(n) * sizeof(float)));
    std::vector<float> host(static_cast<std::size_t>(n));
    std::uint64_t s = seed * 2654435761ull + 7;
    for (float& x : host) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      x = static_cast<float>(static_cast<double>(s >> 40) / static_cast<double>(1ull << 23) - 1.0);
    }
    tr::cuda::copy(p, host.data(), host.size() * sizeof(float));
  }
  ~DeviceFloats() { tr::cuda::free_device(p); }
  DeviceFloats(const DeviceFloats&) = delete;
  DeviceFloats& operator=(const DeviceFloats&) = delete;
};

// Median milliseconds of one call of `body`.
double median_ms(const std::function<void()>& body) {
  for (int i = 0; i < g_warmup; ++i) body();
  cudaEvent_t start, stop;
  TR_CUDA_CHECK(cudaEventCreate(&start));
  TR_CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<double> ms;
  for (int i = 0; i < g_reps; ++i) {
    TR_CUDA_CHECK(cudaEventRecord(start, 0));
    body();
    TR_CUDA_CHECK(cudaEventRecord(stop, 0));
    TR_CUDA_CHECK(cudaEventSynchronize(stop));
    float t = 0;
    TR_CUDA_CHECK(cudaEventElapsedTime(&t, start, stop));
    ms.push_back(t);
  }
  TR_CUDA_CHECK(cudaEventDestroy(start));
  TR_CUDA_CHECK(cudaEventDestroy(stop));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

template <typename... Args>
std::string format(const char* fmt, Args... args) {
  char buf[128];
  std::snprintf(buf, sizeof buf, fmt, args...);
  return buf;
}

void print(const char* kernel, const std::string& shape, const char* precision, double ms,
           const char* unit, double per_second) {
  std::printf(
      "{\"kernel\": \"%s\", \"shape\": \"%s\", \"precision\": \"%s\", \"ms\": %.4f, "
      "\"%s\": %.2f}\n",
      kernel, shape.c_str(), precision, ms, unit, per_second);
  std::fflush(stdout);
}

// n bf16 values on the device, converted from DeviceFloats(n, seed).
struct DeviceBf16 {
  tr::cuda::bf16* p = nullptr;
  DeviceBf16(i64 n, std::uint32_t seed) {
    p = static_cast<tr::cuda::bf16*>(
        tr::cuda::malloc_device(static_cast<std::size_t>(n) * sizeof(tr::cuda::bf16)));
    DeviceFloats f(n, seed);
    tr::cuda::f32_to_bf16(p, f.p, n);
    tr::cuda::synchronize();
  }
  ~DeviceBf16() { tr::cuda::free_device(p); }
  DeviceBf16(const DeviceBf16&) = delete;
  DeviceBf16& operator=(const DeviceBf16&) = delete;
};

// bf16: operands and output stored in bf16 (gemm_bf16, fp32 accumulation), as the bf16
// activations of train.precision: bf16 and PyTorch's bf16 F.linear.
void gemm_case(i64 M, i64 N, i64 K, bool bf16) {
  double ms = 0;
  if (bf16) {
    DeviceBf16 x(M * K, 1), w(N * K, 2), y(M * N, 3);
    ms = median_ms(
        [&] { tr::cuda::gemm_bf16(false, true, M, N, K, 1.0f, x.p, K, w.p, K, 0.0f, y.p, N); });
  } else {
    DeviceFloats x(M * K, 1), w(N * K, 2), y(M * N, 3);
    ms = median_ms(
        [&] { tr::cuda::gemm(false, true, M, N, K, 1.0f, x.p, K, w.p, K, 0.0f, y.p, N); });
  }
  const std::string shape = std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K);
  print("gemm", shape, bf16 ? "bf16" : "fp32", ms, "tflops", 2.0 * M * N * K / (ms * 1e9));
}

// An attention case's shape column: "B128 H12 T197 Dh64".
std::string attention_shape(i64 B, i64 H, i64 T, i64 Dh) {
  return format("B%lld H%lld T%lld Dh%lld", (long long)B, (long long)H, (long long)T,
                (long long)Dh);
}

void attention_case(i64 B, i64 H, i64 T, i64 Dh, bool bf16) {
  const i64 n = B * T * H * Dh, scores = B * H * T * T;
  DeviceFloats q(n, 4), k(n, 5), v(n, 6), dout(n, 7), out(n, 8), dq(n, 9), dk(n, 10), dv(n, 11),
      probs(scores, 12), scratch(scores, 13);
  tr::cuda::set_bf16_matmuls(bf16);
  const double ms = median_ms([&] {
    tr::cuda::attention_forward(out.p, probs.p, q.p, k.p, v.p, nullptr, nullptr, 1.0f, B, H, T, T,
                                Dh, false, 0);
    tr::cuda::attention_backward(dq.p, dk.p, dv.p, scratch.p, dout.p, probs.p, q.p, k.p, v.p,
                                 nullptr, 1.0f, B, H, T, T, Dh);
  });
  tr::cuda::set_bf16_matmuls(false);
  const std::string shape = attention_shape(B, H, T, Dh);
  print("attention fwd+bwd", shape, bf16 ? "bf16" : "fp32", ms, "tflops",
        12.0 * B * H * T * T * Dh / (ms * 1e9));
}

// The flash kernels on projections of one storage type: DeviceFloats (fp32) or DeviceBf16;
// with `keep` (and its keep_scale), dropout on the probabilities through that keep mask.
template <typename Values>
void flash_attention_case(i64 B, i64 H, i64 T, i64 Dh, const char* precision,
                          const char* name = "attention flash", const std::uint8_t* keep = nullptr,
                          float keep_scale = 1.0f) {
  const i64 n = B * T * H * Dh;
  Values q(n, 4), k(n, 5), v(n, 6), dout(n, 7), out(n, 8), dq(n, 9), dk(n, 10), dv(n, 11);
  DeviceFloats lse(B * H * T, 12);
  const double ms = median_ms([&] {
    tr::cuda::flash_attention_forward(out.p, lse.p, q.p, k.p, v.p, nullptr, keep, keep_scale, B, H,
                                      T, T, Dh, false, 0);
    tr::cuda::flash_attention_backward(dq.p, dk.p, dv.p, dout.p, out.p, lse.p, q.p, k.p, v.p,
                                       nullptr, keep, keep_scale, B, H, T, T, Dh, false, 0);
  });
  const std::string shape = attention_shape(B, H, T, Dh);
  // The same 12 B H T^2 Dh as the materialised kernels (the backward's recomputed scores are
  // not counted, as for PyTorch's fused attention beside it).
  print(name, shape, precision, ms, "tflops", 12.0 * B * H * T * T * Dh / (ms * 1e9));
}

// The attention probabilities' mask layout of layers/dropout.h for [B, H, T, T]: rows at fixed
// strides of 2^40, 2^32, 2^16 counters.
tr::cuda::DropoutLayout attention_mask_layout(i64 B, i64 H, i64 T) {
  tr::cuda::DropoutLayout layout;
  layout.n = 3;
  const i64 dims[3] = {B, H, T};
  const std::uint64_t strides[3] = {std::uint64_t{1} << 40, std::uint64_t{1} << 32,
                                    std::uint64_t{1} << 16};
  for (int j = 0; j < 3; ++j) {
    layout.dims[j] = dims[j];
    layout.strides[j] = strides[j];
  }
  return layout;
}

// A keep mask [B, H, T, T] with dropout 0.1; freed by the owner.
struct DeviceKeepMask {
  std::uint8_t* p = nullptr;
  DeviceKeepMask(i64 B, i64 H, i64 T) {
    p = static_cast<std::uint8_t*>(
        tr::cuda::malloc_device(static_cast<std::size_t>(B * H * T * T)));
    tr::cuda::dropout_mask_strided(p, B * H * T, T, attention_mask_layout(B, H, T), 0.1f, 1234, 5,
                                   0);
  }
  ~DeviceKeepMask() { tr::cuda::free_device(p); }
  DeviceKeepMask(const DeviceKeepMask&) = delete;
  DeviceKeepMask& operator=(const DeviceKeepMask&) = delete;
};

// bf16 attention through cuDNN's fused engines (the path train.precision: bf16 takes where
// cuDNN is present), beside the own flash kernels' row. Dropout 0.1 on the probabilities
// through the caller's keep mask (keep_mask: widened to bf16 for cuDNN, included), or drawn
// inside cuDNN's kernels (drawn: train.attention_dropout: fused; no mask made or read).
enum class CudnnDropout { none, keep_mask, drawn };

void cudnn_attention_case(i64 B, i64 H, i64 T, i64 Dh, CudnnDropout dropout) {
  const i64 n = B * T * H * Dh;
  DeviceBf16 q(n, 4), k(n, 5), v(n, 6), dout(n, 7), out(n, 8), dq(n, 9), dk(n, 10), dv(n, 11);
  DeviceFloats lse(B * H * T, 12);
  std::optional<DeviceKeepMask> keep;
  if (dropout == CudnnDropout::keep_mask) keep.emplace(B, H, T);
  const std::uint8_t* mask = keep ? keep->p : nullptr;
  const float keep_scale = dropout == CudnnDropout::keep_mask ? 1.0f / 0.9f : 1.0f;
  bool taken = true;
  const double ms = median_ms([&] {
    if (dropout == CudnnDropout::drawn) {
      taken = taken && tr::cuda::cudnn_attention_forward_drawn_dropout(
                           out.p, lse.p, q.p, k.p, v.p, nullptr, 0.9f, 1234, B, H, T, T, Dh, false);
      if (taken)
        tr::cuda::cudnn_attention_backward_drawn_dropout(dq.p, dk.p, dv.p, dout.p, out.p, lse.p,
                                                         q.p, k.p, v.p, nullptr, 0.9f, 1234, B, H,
                                                         T, T, Dh, false);
      return;
    }
    taken = taken && tr::cuda::cudnn_attention_forward(out.p, lse.p, q.p, k.p, v.p, nullptr, mask,
                                                       keep_scale, B, H, T, T, Dh, false, 0);
    taken = taken && tr::cuda::cudnn_attention_backward(dq.p, dk.p, dv.p, dout.p, out.p, lse.p, q.p,
                                                        k.p, v.p, nullptr, mask, keep_scale, B, H,
                                                        T, T, Dh, false, 0);
  });
  const std::string shape = attention_shape(B, H, T, Dh);
  const char* name = dropout == CudnnDropout::drawn       ? "attention cudnn fused dropout"
                     : dropout == CudnnDropout::keep_mask ? "attention cudnn dropout"
                                                          : "attention cudnn";
  if (!taken) {
    std::fprintf(stderr, "gpu_kernels: %s %s not run: %s\n", name, shape.c_str(),
                 tr::cuda::cudnn_attention_available()
                     ? tr::cuda::cudnn_attention_last_problem().c_str()
                     : tr::cuda::cudnn_attention_status().c_str());
    return;
  }
  print(name, shape, "bf16", ms, "tflops", 12.0 * B * H * T * T * Dh / (ms * 1e9));
}

// The own bf16 flash kernels with dropout 0.1 (the encoder-decoder's training attention).
void flash_dropout_case(i64 B, i64 H, i64 T, i64 Dh) {
  const DeviceKeepMask keep(B, H, T);
  flash_attention_case<DeviceBf16>(B, H, T, Dh, "bf16", "attention flash dropout", keep.p,
                                   1.0f / 0.9f);
}

// The attention probabilities' dropout mask [B, H, T, T] (bytes), drawn in the layout of
// layers/dropout.h (rows at fixed strides of 2^40, 2^32, 2^16 counters): what every attention
// layer draws in training with dropout on. Beside PyTorch's bernoulli_ on a bool tensor.
void dropout_mask_case(i64 B, i64 H, i64 T) {
  const i64 n = B * H * T * T;
  auto* keep = static_cast<std::uint8_t*>(tr::cuda::malloc_device(static_cast<std::size_t>(n)));
  const tr::cuda::DropoutLayout layout = attention_mask_layout(B, H, T);
  const double ms = median_ms(
      [&] { tr::cuda::dropout_mask_strided(keep, B * H * T, T, layout, 0.1f, 1234, 5, 0); });
  tr::cuda::free_device(keep);
  const std::string shape = format("B%lld H%lld T%lld", (long long)B, (long long)H, (long long)T);
  print("dropout mask", shape, "u8", ms, "gbps", static_cast<double>(n) / (ms * 1e6));
}

void layernorm_case(i64 rows, i64 cols) {
  const i64 n = rows * cols;
  DeviceFloats x(n, 14), y(n, 15), dout(n, 16), din(n, 17), weight(cols, 18), bias(cols, 19),
      dweight(cols, 20), dbias(cols, 21), mean(rows, 22), rstd(rows, 23);
  const double fwd = median_ms([&] {
    tr::cuda::layernorm_forward(y.p, mean.p, rstd.p, x.p, weight.p, bias.p, rows, cols, 1e-5f);
  });
  const auto backward = [&] {
    tr::cuda::layernorm_backward(din.p, dweight.p, dbias.p, dout.p, x.p, weight.p, mean.p, rstd.p,
                                 rows, cols);
  };
  const double bwd = median_ms(backward);
  // The same with the two-pass backward (din, then the column sums over every element).
  tr::cuda::set_layernorm_one_pass_backward(false);
  const double bwd_two_pass = median_ms(backward);
  tr::cuda::set_layernorm_one_pass_backward(true);
  const std::string shape = format("%lldx%lld", (long long)rows, (long long)cols);
  const double bytes = static_cast<double>(n) * sizeof(float);
  print("layernorm forward", shape, "fp32", fwd, "gbps", 2 * bytes / (fwd * 1e6));
  print("layernorm backward", shape, "fp32", bwd, "gbps", 3 * bytes / (bwd * 1e6));
  print("layernorm bwd 2-pass", shape, "fp32", bwd_two_pass, "gbps",
        3 * bytes / (bwd_two_pass * 1e6));
}

// A linear layer's weight and bias gradients from bf16 dy [N, out] and x [N, in] (the bf16
// activations' backward, dx not asked): the bias gradient from the product's BGRADB epilogue
// ("linear dW+db"), and after it by the column-sum kernel ("linear dW+db 2-pass").
void linear_weight_grad_case(i64 N, i64 in, i64 out) {
  tr::cuda::set_bf16_matmuls(true);
  DeviceBf16 dy(N * out, 24), x(N * in, 25);
  DeviceFloats w(out * in, 26), dweight(out * in, 27), dbias(out, 28);
  const auto step = [&] {
    tr::cuda::linear_backward_mixed({}, 0.0f, dweight.p, dbias.p, {dy.p, true}, {x.p, true}, w.p, N,
                                    in, out);
  };
  const long declined = tr::cuda::bias_gradient_epilogue_fallbacks();
  const double fused = median_ms(step);
  const bool epilogue_taken = tr::cuda::bias_gradient_epilogue_fallbacks() == declined;
  tr::cuda::set_bias_gradient_epilogue(false);
  const double two_pass = median_ms(step);
  tr::cuda::set_bias_gradient_epilogue(true);
  tr::cuda::set_bf16_matmuls(false);
  const std::string shape = format("%lldx%lldx%lld", (long long)N, (long long)out, (long long)in);
  const double flops = 2.0 * N * in * out;
  // A declined epilogue ran the column sums: the row says so rather than time them as fused.
  print(epilogue_taken ? "linear dW+db" : "linear dW+db (declined)", shape, "bf16", fused, "tflops",
        flops / (fused * 1e9));
  print("linear dW+db 2-pass", shape, "bf16", two_pass, "tflops", flops / (two_pass * 1e9));
}

// The tanh GELU's feed-forward products at [N, d] -> [N, d_ff] -> [N, d], bf16 activations, each
// with its GELU epilogue and without (cuda::set_gelu_epilogue(false): the kernels after).
void linear_gelu_case(i64 N, i64 d, i64 d_ff) {
  tr::cuda::set_bf16_matmuls(true);
  DeviceBf16 x(N * d, 30), y(N * d_ff, 31), pre(N * d_ff, 32), dy(N * d, 33), dh(N * d_ff, 34);
  DeviceFloats w1(d_ff * d, 35), b1(d_ff, 36), w2(d * d_ff, 37), dw2(d * d_ff, 38), db2(d, 39);
  const auto forward = [&] {
    tr::cuda::linear_gelu_tanh_forward_mixed({y.p, true}, {pre.p, true}, {x.p, true}, w1.p, b1.p, N,
                                             d, d_ff);
  };
  const auto backward = [&] {
    tr::cuda::linear_backward_mixed({dh.p, true}, 0.0f, dw2.p, db2.p, {dy.p, true}, {y.p, true},
                                    w2.p, N, d_ff, d, {pre.p, true});
  };
  const long declined = tr::cuda::gelu_epilogue_fallbacks();
  const double fwd = median_ms(forward), bwd = median_ms(backward);
  const bool epilogue_taken = tr::cuda::gelu_epilogue_fallbacks() == declined;
  tr::cuda::set_gelu_epilogue(false);
  const double fwd_two_pass = median_ms(forward), bwd_two_pass = median_ms(backward);
  tr::cuda::set_gelu_epilogue(true);
  tr::cuda::set_bf16_matmuls(false);
  const std::string fwd_shape =
                        format("%lldx%lldx%lld", (long long)N, (long long)d_ff, (long long)d),
                    bwd_shape =
                        format("%lldx%lldx%lld", (long long)N, (long long)d, (long long)d_ff);
  const double flops = 2.0 * N * d * d_ff;
  print(epilogue_taken ? "linear gelu_tanh fwd" : "linear gelu_tanh fwd (declined)", fwd_shape,
        "bf16", fwd, "tflops", flops / (fwd * 1e9));
  print("linear gelu_tanh fwd 2-pass", fwd_shape, "bf16", fwd_two_pass, "tflops",
        flops / (fwd_two_pass * 1e9));
  print(epilogue_taken ? "linear gelu_tanh bwd" : "linear gelu_tanh bwd (declined)", bwd_shape,
        "bf16", bwd, "tflops", 2 * flops / (bwd * 1e9));
  print("linear gelu_tanh bwd 2-pass", bwd_shape, "bf16", bwd_two_pass, "tflops",
        2 * flops / (bwd_two_pass * 1e9));
}

// --only TEXT: the cases whose "kernel precision" label contains TEXT (e.g. "attention flash
// bf16" for a profiler's run).
std::string g_only;
bool wanted(const std::string& kernel, const char* precision) {
  return g_only.empty() || (kernel + " " + precision).find(g_only) != std::string::npos;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--reps") == 0) g_reps = std::max(1, std::atoi(argv[i + 1]));
    if (std::strcmp(argv[i], "--warmup") == 0) g_warmup = std::max(0, std::atoi(argv[i + 1]));
    if (std::strcmp(argv[i], "--only") == 0) g_only = argv[i + 1];
  }
  if (tr::cuda::device_count() == 0) {
    std::fprintf(stderr, "gpu_kernels: no CUDA device (%s)\n",
                 tr::cuda::unavailable_reason().c_str());
    return 2;
  }
  std::fprintf(stderr, "gpu_kernels on %s\n", tr::cuda::device_name().c_str());
  tr::cuda::set_cudnn_plan_policy(1, 1e9);  // cuDNN's plans at the first call, in the warm-up
  for (bool bf16 : {false, true}) {
    if (wanted("gemm", bf16 ? "bf16" : "fp32")) {
      gemm_case(25216, 768, 768, bf16);    // ViT-B/16 q, k, v, o projections (batch 128)
      gemm_case(25216, 3072, 768, bf16);   // ViT-B/16 fc1
      gemm_case(25216, 768, 3072, bf16);   // ViT-B/16 fc2
      gemm_case(8192, 32000, 1024, bf16);  // encoder-decoder output projection (32 x 256)
      gemm_case(8192, 8192, 8192, bf16);   // square: the library's ceiling
    }
    if (wanted("attention fwd+bwd", bf16 ? "bf16" : "fp32")) {
      attention_case(128, 12, 197, 64, bf16);
      attention_case(32, 16, 256, 64, bf16);
    }
  }
  for (const char* precision : {"fp32", "bf16"}) {
    const bool bf16 = std::strcmp(precision, "bf16") == 0;
    for (const auto& [B, H, T] : {std::tuple{128, 12, 197}, std::tuple{32, 16, 256}}) {
      if (!wanted("attention flash", precision)) break;
      if (bf16)
        flash_attention_case<DeviceBf16>(B, H, T, 64, precision);
      else
        flash_attention_case<DeviceFloats>(B, H, T, 64, precision);
    }
  }
  if (wanted("attention flash wmma", "bf16")) {  // the scores in shared memory (opt-in)
    const bool mma = tr::cuda::flash_mma_kernels();
    tr::cuda::set_flash_mma_kernels(false);
    for (const auto& [B, H, T] : {std::tuple{128, 12, 197}, std::tuple{32, 16, 256}})
      flash_attention_case<DeviceBf16>(B, H, T, 64, "bf16", "attention flash wmma");
    tr::cuda::set_flash_mma_kernels(mma);
  }
  if (wanted("attention cudnn", "bf16"))
    for (const auto& [B, H, T] : {std::tuple{128, 12, 197}, std::tuple{32, 16, 256}})
      cudnn_attention_case(B, H, T, 64, CudnnDropout::none);
  if (wanted("attention flash dropout", "bf16"))
    flash_dropout_case(32, 16, 256, 64);  // the encoder-decoder's training attention
  if (wanted("attention cudnn dropout", "bf16"))
    cudnn_attention_case(32, 16, 256, 64, CudnnDropout::keep_mask);
  if (wanted("attention cudnn fused dropout", "bf16"))
    cudnn_attention_case(32, 16, 256, 64, CudnnDropout::drawn);
  if (wanted("linear dW+db", "bf16")) {
    linear_weight_grad_case(25216, 768, 768);   // ViT-B/16 q, k, v, o projections
    linear_weight_grad_case(25216, 768, 3072);  // ViT-B/16 fc1
    linear_weight_grad_case(25216, 3072, 768);  // ViT-B/16 fc2
  }
  if (wanted("linear gelu_tanh", "bf16")) linear_gelu_case(25216, 768, 3072);  // ViT-B/16's MLP
  if (wanted("layernorm", "fp32")) {
    layernorm_case(25216, 768);
    layernorm_case(8192, 1024);
  }
  if (wanted("dropout mask", "u8"))
    dropout_mask_case(32, 16, 256);  // the encoder-decoder's (p 0.1)
  return 0;
}
