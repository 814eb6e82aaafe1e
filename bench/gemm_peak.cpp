// bench/gemm_peak: this machine's fp32 GEMM peak as OpenBLAS delivers it (the ceiling the
// training benchmarks are compared against). Square sgemm C = A * B^T, the best of several
// repetitions, on however many OpenMP threads OMP_NUM_THREADS allows.
//
//   gemm_peak [--n 2048] [--reps 5]      prints one JSON line {"n", "gflops"}
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

int main(int argc, char** argv) {
  int n = 2048, reps = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--n") == 0) n = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--reps") == 0) reps = std::atoi(argv[i + 1]);
  }
  std::vector<float> a(static_cast<std::size_t>(n) * n), b(a.size()), c(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    a[i] = static_cast<float>(i % 7) * 0.1f;
    b[i] = static_cast<float>(i % 5) * 0.1f;
  }
  double best = 1e30;
  for (int r = 0; r < reps + 1; ++r) {  // the first call warms up threads and pages
    const auto t0 = std::chrono::steady_clock::now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a.data(), n, b.data(), n,
                0.0f, c.data(), n);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r > 0) best = std::min(best, s);
  }
  std::printf("{\"n\": %d, \"gflops\": %.2f}\n", n,
              2.0 * n * n * static_cast<double>(n) / best / 1e9);
  return 0;
}
