// CPU optimizer updates and the sum-of-squares reduction behind gradient clipping.
//
// The updates follow torch.optim's single-tensor code paths operation by operation (same
// order of multiplications and divisions), so fp64 results agree with PyTorch to a few ulp.
// The scalar factors (bias corrections, step size) are formed in double, as Python does,
// and rounded to T once.
#include <algorithm>
#include <cmath>
#include <vector>

#include "layers/cpu/adamw_step.h"
#include "layers/cpu/kernels.h"

namespace tr::cpu {

namespace {

// Below this size the cost of waking the thread team exceeds the update itself; biases and
// LayerNorm parameters (a few hundred elements) then run on the calling thread.
constexpr i64 kParallelMin = 1 << 14;

// sum_squares splits its input into blocks of this many elements, whatever the thread count,
// so the summation order (and thus the result, bit for bit) depends only on n.
constexpr i64 kSumBlock = 1 << 13;

template <typename T>
double block_sum_squares(const T* x, i64 n) {
  // Four independent accumulators in a fixed lane pattern: keeps the FP pipeline busy without
  // making the order depend on anything but n.
  double acc0 = 0.0, acc1 = 0.0, acc2 = 0.0, acc3 = 0.0;
  i64 i = 0;
  for (; i + 4 <= n; i += 4) {
    const double a = x[i], b = x[i + 1], c = x[i + 2], d = x[i + 3];
    acc0 += a * a;
    acc1 += b * b;
    acc2 += c * c;
    acc3 += d * d;
  }
  for (; i < n; ++i) {
    const double a = x[i];
    acc0 += a * a;
  }
  return (acc0 + acc1) + (acc2 + acc3);
}

}  // namespace

template <typename T>
void adamw_update(T* param, const T* grad, T* m, T* v, i64 n, T lr, T beta1, T beta2, T eps,
                  T weight_decay, i64 step) {
  const AdamWConstants<T> c = adamw_constants(lr, beta1, beta2, eps, weight_decay, step);
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (i64 i = 0; i < n; ++i) adamw_element(param[i], grad[i], m[i], v[i], c);
}

template <typename T>
void sgd_update(T* param, const T* grad, T* momentum_buf, i64 n, T lr, T momentum, T weight_decay,
                bool first_step) {
  const T neg_lr = -lr;
  if (momentum == T(0)) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
    for (i64 i = 0; i < n; ++i) {
      const T d = grad[i] + weight_decay * param[i];
      param[i] = param[i] + neg_lr * d;
    }
    return;
  }
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (i64 i = 0; i < n; ++i) {
    const T d = grad[i] + weight_decay * param[i];
    // torch starts the buffer as a copy of the first (decayed) gradient, not from zero.
    const T buf = first_step ? d : momentum_buf[i] * momentum + d;
    momentum_buf[i] = buf;
    param[i] = param[i] + neg_lr * buf;
  }
}

template <typename T>
double sum_squares(const T* x, i64 n) {
  if (n <= kSumBlock) return block_sum_squares(x, n);
  const i64 blocks = (n + kSumBlock - 1) / kSumBlock;
  // Reused across calls so that a warm training step does not allocate. The pointer is taken
  // here: inside the parallel region each worker would see its own thread_local instance.
  thread_local std::vector<double> partial_storage;
  partial_storage.resize(static_cast<std::size_t>(blocks));
  double* partial = partial_storage.data();
#pragma omp parallel for schedule(static)
  for (i64 b = 0; b < blocks; ++b) {
    const i64 begin = b * kSumBlock;
    partial[b] = block_sum_squares(x + begin, std::min(kSumBlock, n - begin));
  }
  double total = 0.0;
  for (i64 b = 0; b < blocks; ++b) total += partial[b];
  return total;
}

template void adamw_update<float>(float*, const float*, float*, float*, i64, float, float, float,
                                  float, float, i64);
template void adamw_update<double>(double*, const double*, double*, double*, i64, double, double,
                                   double, double, double, i64);
template void sgd_update<float>(float*, const float*, float*, i64, float, float, float, bool);
template void sgd_update<double>(double*, const double*, double*, i64, double, double, double,
                                 bool);
template double sum_squares<float>(const float*, i64);
template double sum_squares<double>(const double*, i64);

}  // namespace tr::cpu
