// CPU kernels against naive fp64 references written here, and gradients against central
// finite differences. fp32 kernels are compared with the fp64 reference evaluated on the same
// (fp32-rounded) inputs, by normalised error max|a - b| / max(1, max|ref|).
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "layers/cpu/kernels.h"
#include "layers/cpu/philox.h"

namespace tr::cpu {
namespace {

using Vec = std::vector<double>;

template <typename T>
double tol();
template <>
double tol<float>() {
  return 1e-5;
}
template <>
double tol<double>() {
  return 1e-12;
}

// Values as the kernel sees them (t) and the same values widened for the reference (d).
template <typename T>
struct Arr {
  std::vector<T> t;
  Vec d;
};

template <typename T>
Arr<T> rand_arr(i64 n, std::uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  Arr<T> a;
  a.t.resize(n);
  a.d.resize(n);
  for (i64 i = 0; i < n; ++i) {
    a.t[i] = static_cast<T>(dist(gen));
    a.d[i] = static_cast<double>(a.t[i]);
  }
  return a;
}

template <typename T>
double max_err(const T* got, const double* ref, i64 n) {
  double diff = 0, mag = 0;
  for (i64 i = 0; i < n; ++i) {
    const double g = static_cast<double>(got[i]);
    if (!std::isfinite(g)) return std::numeric_limits<double>::infinity();
    diff = std::max(diff, std::abs(g - ref[i]));
    mag = std::max(mag, std::abs(ref[i]));
  }
  return diff / std::max(1.0, mag);
}

// Builds labels; also sidesteps GCC 12's false -Wrestrict on chains of string operator+.
template <typename... Args>
std::string str(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

void report(const std::string& what, double err) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::printf("  [max_err] %s.%s %s: %.3e\n", info->test_suite_name(), info->name(), what.c_str(),
              err);
}

template <typename T>
void expect_close(const std::string& what, const T* got, const Vec& ref, double tolerance) {
  const double err = max_err(got, ref.data(), static_cast<i64>(ref.size()));
  report(what, err);
  EXPECT_LE(err, tolerance) << what;
}

// Central differences of a scalar function of x (x restored afterwards).
Vec fd_grad(Vec& x, const std::function<double()>& loss, double h = 1e-6) {
  Vec g(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double saved = x[i];
    x[i] = saved + h;
    const double lp = loss();
    x[i] = saved - h;
    const double lm = loss();
    x[i] = saved;
    g[i] = (lp - lm) / (2 * h);
  }
  return g;
}

template <typename T>
class CpuKernels : public ::testing::Test {};
using KernelTypes = ::testing::Types<float, double>;
TYPED_TEST_SUITE(CpuKernels, KernelTypes);

// ---- GEMM ----------------------------------------------------------------------------------

TYPED_TEST(CpuKernels, GemmAllTransposesLeadingDimsBeta) {
  using T = TypeParam;
  const i64 shapes[][3] = {{1, 1, 1},   {7, 13, 37}, {37, 7, 13},
                           {16, 17, 1}, {5, 3, 64},  {33, 1, 9}};
  std::uint64_t seed = 1;
  for (const auto& s : shapes) {
    const i64 M = s[0], N = s[1], K = s[2];
    for (int ta = 0; ta < 2; ++ta) {
      for (int tb = 0; tb < 2; ++tb) {
        for (double beta : {0.0, 0.5}) {
          const i64 lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 2, ldc = N + 5;
          const i64 a_rows = ta ? K : M, b_rows = tb ? N : K;
          auto A = rand_arr<T>(a_rows * lda, seed++);
          auto B = rand_arr<T>(b_rows * ldb, seed++);
          auto C = rand_arr<T>(M * ldc, seed++);
          const double alpha = 0.75;
          Vec ref = C.d;
          for (i64 m = 0; m < M; ++m) {
            for (i64 n = 0; n < N; ++n) {
              double acc = 0;
              for (i64 k = 0; k < K; ++k) {
                const double a = ta ? A.d[k * lda + m] : A.d[m * lda + k];
                const double b = tb ? B.d[n * ldb + k] : B.d[k * ldb + n];
                acc += a * b;
              }
              ref[m * ldc + n] = alpha * acc + beta * C.d[m * ldc + n];
            }
          }
          std::vector<T> got = C.t;
          gemm<T>(ta, tb, M, N, K, T(alpha), A.t.data(), lda, B.t.data(), ldb, T(beta), got.data(),
                  ldc);
          // The whole C array, so the padding columns are checked to be untouched too.
          expect_close(str("gemm M", M, " N", N, " K", K, " ta", ta, " tb", tb, " beta", beta),
                       got.data(), ref, tol<T>());
          for (i64 m = 0; m < M; ++m)
            for (i64 n = N; n < ldc; ++n) EXPECT_EQ(got[m * ldc + n], C.t[m * ldc + n]);
        }
      }
    }
  }
}

TYPED_TEST(CpuKernels, GemmBetaZeroOverwritesNanAndEmptyK) {
  using T = TypeParam;
  const i64 M = 7, N = 13, K = 5;
  auto A = rand_arr<T>(M * K, 11);
  auto B = rand_arr<T>(K * N, 12);
  std::vector<T> C(M * N, std::numeric_limits<T>::quiet_NaN());
  gemm<T>(false, false, M, N, K, T(1), A.t.data(), K, B.t.data(), N, T(0), C.data(), N);
  for (T c : C) EXPECT_TRUE(std::isfinite(c));

  // K == 0: C = beta * C (an empty sum), and NaN-free for beta == 0.
  std::vector<T> D(M * N, T(2));
  gemm<T>(false, false, M, N, 0, T(1), A.t.data(), 1, B.t.data(), N, T(0.5), D.data(), N);
  for (T d : D) EXPECT_EQ(d, T(1));
  std::vector<T> E(M * N, std::numeric_limits<T>::quiet_NaN());
  gemm<T>(false, false, M, N, 0, T(1), A.t.data(), 1, B.t.data(), N, T(0), E.data(), N);
  for (T e : E) EXPECT_EQ(e, T(0));
}

// ---- elementwise ---------------------------------------------------------------------------

TYPED_TEST(CpuKernels, BiasAddAndBiasBackwardAccumulates) {
  using T = TypeParam;
  for (auto [rows, cols] : {std::pair<i64, i64>{1, 1}, {13, 7}, {37, 130}, {300, 97}}) {
    auto x = rand_arr<T>(rows * cols, 21);
    auto bias = rand_arr<T>(cols, 22);
    Vec ref(rows * cols);
    for (i64 r = 0; r < rows; ++r)
      for (i64 c = 0; c < cols; ++c) ref[r * cols + c] = x.d[r * cols + c] + bias.d[c];
    std::vector<T> out(rows * cols);
    bias_add<T>(out.data(), x.t.data(), bias.t.data(), rows, cols);
    expect_close(str("bias_add ", rows, "x", cols), out.data(), ref, tol<T>());
    std::vector<T> inplace = x.t;  // out aliasing in
    bias_add<T>(inplace.data(), inplace.data(), bias.t.data(), rows, cols);
    EXPECT_EQ(inplace, out);

    auto db0 = rand_arr<T>(cols, 23);
    Vec dref = db0.d;
    for (int pass = 0; pass < 2; ++pass)
      for (i64 r = 0; r < rows; ++r)
        for (i64 c = 0; c < cols; ++c) dref[c] += x.d[r * cols + c];
    std::vector<T> db = db0.t;
    bias_backward_accumulate<T>(db.data(), x.t.data(), rows, cols);
    bias_backward_accumulate<T>(db.data(), x.t.data(), rows, cols);
    expect_close(str("bias_backward_accumulate twice ", rows, "x", cols), db.data(), dref,
                 tol<T>());
  }
}

TYPED_TEST(CpuKernels, AddAddAccumulateScale) {
  using T = TypeParam;
  for (i64 n : {1, 13, 1000, 40001}) {
    auto a = rand_arr<T>(n, 31);
    auto b = rand_arr<T>(n, 32);
    Vec sum(n), acc(n), scaled(n);
    for (i64 i = 0; i < n; ++i) {
      sum[i] = a.d[i] + b.d[i];
      acc[i] = b.d[i] + a.d[i];
      scaled[i] = -1.5 * a.d[i];
    }
    std::vector<T> out(n);
    add<T>(out.data(), a.t.data(), b.t.data(), n);
    expect_close(str("add n", n), out.data(), sum, tol<T>());
    std::vector<T> alias = a.t;
    add<T>(alias.data(), alias.data(), b.t.data(), n);
    EXPECT_EQ(alias, out);
    std::vector<T> accum = b.t;
    add_accumulate<T>(accum.data(), a.t.data(), n);
    expect_close(str("add_accumulate n", n), accum.data(), acc, tol<T>());
    scale<T>(out.data(), a.t.data(), T(-1.5), n);
    expect_close(str("scale n", n), out.data(), scaled, tol<T>());
    std::vector<T> sa = a.t;
    scale<T>(sa.data(), sa.data(), T(-1.5), n);
    EXPECT_EQ(sa, out);
  }
}

// An elementwise kernel pair's analytic derivative (backward of a unit gradient) against
// central differences of its forward, at every 50th of the points xs.
template <typename Forward, typename Backward>
void expect_derivative_is_central_difference(const Vec& xs, Forward forward, Backward backward) {
  for (std::size_t i = 0; i < xs.size(); i += 50) {
    const double h = 1e-6, xp = xs[i] + h, xm = xs[i] - h, one = 1;
    double yp, ym, d;
    forward(&yp, &xp);
    forward(&ym, &xm);
    backward(&d, &one, &xs[i]);
    EXPECT_NEAR(d, (yp - ym) / (2 * h), 1e-8) << "x=" << xs[i];
  }
}

TYPED_TEST(CpuKernels, GeluForwardBackward) {
  using T = TypeParam;
  const i64 n = 1001;
  auto x = rand_arr<T>(n, 41, -6.0, 6.0);
  x.t[0] = T(0);
  x.d[0] = 0;
  auto g = rand_arr<T>(n, 42);
  Vec fwd(n), bwd(n);
  for (i64 i = 0; i < n; ++i) {
    const double v = x.d[i];
    fwd[i] = 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
    const double dgelu =
        0.5 * (1 + std::erf(v / std::sqrt(2.0))) + v * std::exp(-0.5 * v * v) / std::sqrt(2 * M_PI);
    bwd[i] = g.d[i] * dgelu;
  }
  std::vector<T> out(n), din(n);
  gelu_forward<T>(out.data(), x.t.data(), n);
  expect_close("gelu_forward", out.data(), fwd, tol<T>());
  gelu_backward<T>(din.data(), g.t.data(), x.t.data(), n);
  expect_close("gelu_backward", din.data(), bwd, tol<T>());
  // From the forward output (the FeedForward path), including x = 0 and tiny |x|.
  std::vector<T> xs = x.t;
  xs[1] = T(1e-35);
  xs[2] = T(-1e-32);
  xs[3] = T(-20);
  Vec bwd2 = bwd;
  for (i64 i : {1, 2, 3}) {
    const double v = xs[i];
    bwd2[i] = g.d[i] * (0.5 * (1 + std::erf(v / std::sqrt(2.0))) +
                        v * std::exp(-0.5 * v * v) / std::sqrt(2 * M_PI));
  }
  std::vector<T> y(n), din2(n);
  gelu_forward<T>(y.data(), xs.data(), n);
  gelu_backward<T>(din2.data(), g.t.data(), xs.data(), n, y.data());
  expect_close("gelu_backward from output", din2.data(), bwd2, tol<T>());

  if constexpr (std::is_same_v<T, double>)
    expect_derivative_is_central_difference(
        x.d, [](double* y, const double* v) { gelu_forward<double>(y, v, 1); },
        [](double* d, const double* dy, const double* v) { gelu_backward<double>(d, dy, v, 1); });
}

TEST(CpuKernelsFloat, GeluNonFiniteAndTails) {
  // As x * Phi(x) in exact arithmetic: inf stays inf, -inf gives -inf * 0 = NaN (as PyTorch).
  const float inf = std::numeric_limits<float>::infinity(), nan = std::nanf("");
  std::vector<float> x = {inf, -inf, nan, 30.0f, -30.0f, 9.0f, -9.0f, 0.0f, 1e-38f};
  std::vector<float> y(x.size());
  gelu_forward<float>(y.data(), x.data(), static_cast<i64>(x.size()));
  EXPECT_EQ(y[0], inf);
  EXPECT_TRUE(std::isnan(y[1]));
  EXPECT_TRUE(std::isnan(y[2]));
  EXPECT_EQ(y[3], 30.0f);
  EXPECT_EQ(y[4], 0.0f);
  EXPECT_EQ(y[5], 9.0f);
  const double far_tail = -9.0 * 0.5 * std::erfc(9.0 / std::sqrt(2.0));  // -1.0e-18
  EXPECT_NEAR(y[6], far_tail, 1e-5 * -far_tail);
  EXPECT_EQ(y[7], 0.0f);
  EXPECT_NEAR(y[8], 0.5e-38, 1e-44);
}

// The tanh GELU (PyTorch's approximate='tanh') against its formula in fp64, its derivative by
// central differences, and the fp32 kernel's far tails (its gate is 1 / (1 + e^-2u)).
TYPED_TEST(CpuKernels, GeluTanhForwardBackward) {
  using T = TypeParam;
  const i64 n = 1001;
  auto x = rand_arr<T>(n, 43, -6.0, 6.0);
  x.t[0] = T(0);
  x.d[0] = 0;
  auto g = rand_arr<T>(n, 44);
  const double k = std::sqrt(2.0 / M_PI);
  Vec fwd(n), bwd(n);
  for (i64 i = 0; i < n; ++i) {
    const double v = x.d[i], t = std::tanh(k * (v + 0.044715 * v * v * v));
    fwd[i] = 0.5 * v * (1 + t);
    bwd[i] = g.d[i] * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * k * (1 + 3 * 0.044715 * v * v));
  }
  std::vector<T> out(n), din(n);
  gelu_tanh_forward<T>(out.data(), x.t.data(), n);
  expect_close("gelu_tanh_forward", out.data(), fwd, tol<T>());
  gelu_tanh_backward<T>(din.data(), g.t.data(), x.t.data(), n);
  expect_close("gelu_tanh_backward", din.data(), bwd, tol<T>());
  // Not the erf GELU: the two differ by up to ~5e-4 around |x| = 2.
  std::vector<T> exact(n);
  gelu_forward<T>(exact.data(), x.t.data(), n);
  double largest = 0;
  for (i64 i = 0; i < n; ++i)
    largest = std::max(largest, std::abs(static_cast<double>(exact[i] - out[i])));
  EXPECT_GT(largest, 1e-4);
  if constexpr (std::is_same_v<T, double>) {
    expect_derivative_is_central_difference(
        x.d, [](double* y, const double* v) { gelu_tanh_forward<double>(y, v, 1); },
        [](double* d, const double* dy, const double* v) {
          gelu_tanh_backward<double>(d, dy, v, 1);
        });
  } else {
    std::vector<float> tails = {30.0f, -30.0f, 100.0f, -100.0f}, y(4), d(4), ones(4, 1.0f);
    gelu_tanh_forward<float>(y.data(), tails.data(), 4);
    gelu_tanh_backward<float>(d.data(), ones.data(), tails.data(), 4);
    EXPECT_EQ(y[0], 30.0f);
    EXPECT_EQ(y[1], 0.0f);
    EXPECT_EQ(y[2], 100.0f);
    EXPECT_EQ(y[3], 0.0f);
    EXPECT_EQ(d[0], 1.0f);
    EXPECT_EQ(d[1], 0.0f);
    EXPECT_EQ(d[2], 1.0f);
    EXPECT_EQ(d[3], 0.0f);
  }
}

TYPED_TEST(CpuKernels, ReluForwardBackward) {
  using T = TypeParam;
  const i64 n = 997;
  auto x = rand_arr<T>(n, 51);
  x.t[3] = T(0);
  x.d[3] = 0;
  auto g = rand_arr<T>(n, 52);
  Vec fwd(n), bwd(n);
  for (i64 i = 0; i < n; ++i) {
    fwd[i] = x.d[i] > 0 ? x.d[i] : 0;
    bwd[i] = x.d[i] > 0 ? g.d[i] : 0;
  }
  std::vector<T> out(n), din(n);
  relu_forward<T>(out.data(), x.t.data(), n);
  expect_close("relu_forward", out.data(), fwd, 0.0);
  relu_backward<T>(din.data(), g.t.data(), x.t.data(), n);
  expect_close("relu_backward", din.data(), bwd, 0.0);
  EXPECT_EQ(din[3], T(0)) << "gradient at exactly 0 is 0, as PyTorch";
}

// ---- LayerNorm -----------------------------------------------------------------------------

struct LnRef {
  Vec out, mean, rstd, din, dweight, dbias;
};

LnRef layernorm_ref(const Vec& x, const Vec& w, const Vec& b, const Vec& dout, i64 rows, i64 cols,
                    double eps) {
  LnRef r{Vec(rows * cols), Vec(rows), Vec(rows), Vec(rows * cols), Vec(cols, 0.0), Vec(cols, 0.0)};
  for (i64 i = 0; i < rows; ++i) {
    const double* xr = &x[i * cols];
    double mu = 0;
    for (i64 c = 0; c < cols; ++c) mu += xr[c];
    mu /= cols;
    double var = 0;
    for (i64 c = 0; c < cols; ++c) var += (xr[c] - mu) * (xr[c] - mu);
    var /= cols;
    const double rs = 1 / std::sqrt(var + eps);
    r.mean[i] = mu;
    r.rstd[i] = rs;
    double a = 0, bb = 0;
    for (i64 c = 0; c < cols; ++c) {
      const double xhat = (xr[c] - mu) * rs;
      r.out[i * cols + c] = xhat * w[c] + b[c];
      const double dxhat = dout[i * cols + c] * w[c];
      a += dxhat;
      bb += dxhat * xhat;
      r.dweight[c] += dout[i * cols + c] * xhat;
      r.dbias[c] += dout[i * cols + c];
    }
    a /= cols;
    bb /= cols;
    for (i64 c = 0; c < cols; ++c) {
      const double xhat = (xr[c] - mu) * rs;
      r.din[i * cols + c] = rs * (dout[i * cols + c] * w[c] - a - xhat * bb);
    }
  }
  return r;
}

TYPED_TEST(CpuKernels, LayerNormForwardBackward) {
  using T = TypeParam;
  const double eps = 1e-5;
  for (auto [rows, cols] : {std::pair<i64, i64>{1, 1}, {7, 13}, {13, 37}, {5, 100}, {200, 130}}) {
    // An offset mean checks that the variance does not cancel.
    auto x = rand_arr<T>(rows * cols, 61, 2.0, 5.0);
    auto w = rand_arr<T>(cols, 62, 0.5, 1.5);
    auto b = rand_arr<T>(cols, 63);
    auto dout = rand_arr<T>(rows * cols, 64);
    auto dw0 = rand_arr<T>(cols, 65);
    auto db0 = rand_arr<T>(cols, 66);
    LnRef ref = layernorm_ref(x.d, w.d, b.d, dout.d, rows, cols, eps);
    const std::string shape = str(rows, "x", cols);

    std::vector<T> out(rows * cols), mean(rows), rstd(rows);
    layernorm_forward<T>(out.data(), mean.data(), rstd.data(), x.t.data(), w.t.data(), b.t.data(),
                         rows, cols, T(eps));
    expect_close("ln out " + shape, out.data(), ref.out, tol<T>());
    expect_close("ln mean " + shape, mean.data(), ref.mean, tol<T>());
    // rstd can be ~300 for a constant row; compare relatively.
    Vec one(rows, 1.0);
    std::vector<double> rstd_ratio(rows);
    for (i64 i = 0; i < rows; ++i) rstd_ratio[i] = rstd[i] / ref.rstd[i];
    expect_close("ln rstd/ref " + shape, rstd_ratio.data(), one, tol<T>());

    std::vector<T> din(rows * cols), dw = dw0.t, db = db0.t;
    layernorm_backward<T>(din.data(), dw.data(), db.data(), dout.t.data(), x.t.data(), w.t.data(),
                          mean.data(), rstd.data(), rows, cols);
    Vec dw_ref = dw0.d, db_ref = db0.d;
    for (i64 c = 0; c < cols; ++c) {
      dw_ref[c] += ref.dweight[c];
      db_ref[c] += ref.dbias[c];
    }
    expect_close("ln din " + shape, din.data(), ref.din, tol<T>());
    expect_close("ln dweight (accumulated) " + shape, dw.data(), dw_ref, tol<T>());
    expect_close("ln dbias (accumulated) " + shape, db.data(), db_ref, tol<T>());
  }
}

TEST(CpuKernelsFd, LayerNormBackwardMatchesFiniteDifferences) {
  const i64 rows = 7, cols = 13;
  const double eps = 1e-5;
  auto x = rand_arr<double>(rows * cols, 71);
  auto w = rand_arr<double>(cols, 72, 0.5, 1.5);
  auto b = rand_arr<double>(cols, 73);
  auto G = rand_arr<double>(rows * cols, 74);
  Vec xv = x.d, wv = w.d, bv = b.d;
  auto loss = [&] {
    Vec out(rows * cols), mean(rows), rstd(rows);
    layernorm_forward<double>(out.data(), mean.data(), rstd.data(), xv.data(), wv.data(), bv.data(),
                              rows, cols, eps);
    double l = 0;
    for (i64 i = 0; i < rows * cols; ++i) l += out[i] * G.d[i];
    return l;
  };
  Vec out(rows * cols), mean(rows), rstd(rows), din(rows * cols), dw(cols, 0.0), db(cols, 0.0);
  layernorm_forward<double>(out.data(), mean.data(), rstd.data(), xv.data(), wv.data(), bv.data(),
                            rows, cols, eps);
  layernorm_backward<double>(din.data(), dw.data(), db.data(), G.d.data(), xv.data(), wv.data(),
                             mean.data(), rstd.data(), rows, cols);
  expect_close("ln din vs fd", din.data(), fd_grad(xv, loss), 1e-6);
  expect_close("ln dweight vs fd", dw.data(), fd_grad(wv, loss), 1e-6);
  expect_close("ln dbias vs fd", db.data(), fd_grad(bv, loss), 1e-6);
}

// ---- softmax -------------------------------------------------------------------------------

TYPED_TEST(CpuKernels, SoftmaxForwardBackward) {
  using T = TypeParam;
  for (auto [rows, cols] : {std::pair<i64, i64>{1, 1}, {7, 13}, {3, 37}, {130, 257}}) {
    auto x = rand_arr<T>(rows * cols, 81, -8.0, 8.0);
    auto g = rand_arr<T>(rows * cols, 82);
    Vec y(rows * cols), dx(rows * cols);
    for (i64 r = 0; r < rows; ++r) {
      double mx = -1e300, s = 0, dot = 0;
      for (i64 c = 0; c < cols; ++c) mx = std::max(mx, x.d[r * cols + c]);
      for (i64 c = 0; c < cols; ++c) s += std::exp(x.d[r * cols + c] - mx);
      for (i64 c = 0; c < cols; ++c) y[r * cols + c] = std::exp(x.d[r * cols + c] - mx) / s;
      for (i64 c = 0; c < cols; ++c) dot += g.d[r * cols + c] * y[r * cols + c];
      for (i64 c = 0; c < cols; ++c) dx[r * cols + c] = y[r * cols + c] * (g.d[r * cols + c] - dot);
    }
    const std::string shape = str(rows, "x", cols);
    std::vector<T> out(rows * cols), din(rows * cols);
    softmax_forward<T>(out.data(), x.t.data(), rows, cols);
    expect_close("softmax fwd " + shape, out.data(), y, tol<T>());
    // Backward on the reference probabilities (rounded to T) isolates the backward kernel.
    std::vector<T> yt(y.begin(), y.end());
    Vec yd(yt.begin(), yt.end());
    for (i64 r = 0; r < rows; ++r) {
      double dot = 0;
      for (i64 c = 0; c < cols; ++c) dot += g.d[r * cols + c] * yd[r * cols + c];
      for (i64 c = 0; c < cols; ++c)
        dx[r * cols + c] = yd[r * cols + c] * (g.d[r * cols + c] - dot);
    }
    softmax_backward<T>(din.data(), g.t.data(), yt.data(), rows, cols);
    expect_close("softmax bwd " + shape, din.data(), dx, tol<T>());
  }
}

TEST(CpuKernelsFd, SoftmaxBackwardMatchesFiniteDifferences) {
  const i64 rows = 5, cols = 11;
  auto x = rand_arr<double>(rows * cols, 91, -3.0, 3.0);
  auto G = rand_arr<double>(rows * cols, 92);
  Vec xv = x.d;
  auto loss = [&] {
    Vec y(rows * cols);
    softmax_forward<double>(y.data(), xv.data(), rows, cols);
    double l = 0;
    for (i64 i = 0; i < rows * cols; ++i) l += y[i] * G.d[i];
    return l;
  };
  Vec y(rows * cols), din(rows * cols);
  softmax_forward<double>(y.data(), xv.data(), rows, cols);
  softmax_backward<double>(din.data(), G.d.data(), y.data(), rows, cols);
  expect_close("softmax din vs fd", din.data(), fd_grad(xv, loss), 1e-6);
}

// ---- embedding -----------------------------------------------------------------------------

TYPED_TEST(CpuKernels, EmbeddingForwardBackwardRepeatedIds) {
  using T = TypeParam;
  struct Case {
    i64 V, d;
    std::vector<std::int32_t> ids;
  };
  std::vector<Case> cases = {{5, 37, {3, 1, 3, 3, 0, 4, 1}}, {1, 1, {0, 0}}, {7, 130, {}}};
  for (int n = 0; n < 300; ++n) cases[2].ids.push_back((n * 5 + n / 7) % 7);
  for (const auto& cs : cases) {
    const i64 N = static_cast<i64>(cs.ids.size()), V = cs.V, d = cs.d;
    const double sc = std::sqrt(static_cast<double>(d));
    auto table = rand_arr<T>(V * d, 101);
    auto dout = rand_arr<T>(N * d, 102);
    auto dt0 = rand_arr<T>(V * d, 103);
    Vec fwd(N * d), bwd = dt0.d;
    for (i64 n = 0; n < N; ++n)
      for (i64 c = 0; c < d; ++c) {
        fwd[n * d + c] = table.d[cs.ids[n] * d + c] * static_cast<double>(T(sc));
        bwd[cs.ids[n] * d + c] += dout.d[n * d + c] * static_cast<double>(T(sc));
      }
    const std::string shape = str("N", N, " V", V);
    std::vector<T> out(N * d);
    embedding_forward<T>(out.data(), cs.ids.data(), table.t.data(), N, d, T(sc));
    expect_close("embedding fwd " + shape, out.data(), fwd, tol<T>());
    std::vector<T> dt = dt0.t;
    embedding_backward_accumulate<T>(dt.data(), cs.ids.data(), dout.t.data(), N, d, T(sc));
    expect_close("embedding bwd (accumulated) " + shape, dt.data(), bwd, tol<T>());
    std::vector<T> again = dt0.t;
    embedding_backward_accumulate<T>(again.data(), cs.ids.data(), dout.t.data(), N, d, T(sc));
    EXPECT_EQ(again, dt) << "bitwise deterministic";
  }
}

// ---- cross entropy -------------------------------------------------------------------------

struct CeRef {
  Vec loss, lse, grad;
  double total = 0;
};

CeRef cross_entropy_ref(const Vec& x, const std::vector<std::int32_t>& t, i64 N, i64 V, double eps,
                        std::int32_t ignore, double scale) {
  CeRef r{Vec(N, 0.0), Vec(N, 0.0), Vec(N * V, 0.0)};
  for (i64 n = 0; n < N; ++n) {
    if (t[n] == ignore) continue;
    const double* xr = &x[n * V];
    double mx = -1e300, s = 0;
    for (i64 v = 0; v < V; ++v) mx = std::max(mx, xr[v]);
    for (i64 v = 0; v < V; ++v) s += std::exp(xr[v] - mx);
    const double lse = mx + std::log(s);
    double smooth = 0;
    for (i64 v = 0; v < V; ++v) smooth += -(xr[v] - lse);
    r.loss[n] = (1 - eps) * (-(xr[t[n]] - lse)) + eps * smooth / V;
    r.lse[n] = lse;
    r.total += r.loss[n];
    for (i64 v = 0; v < V; ++v)
      r.grad[n * V + v] = scale * (std::exp(xr[v] - lse) - (v == t[n] ? 1 - eps : 0) - eps / V);
  }
  return r;
}

TYPED_TEST(CpuKernels, CrossEntropySmoothingIgnoreIndex) {
  using T = TypeParam;
  struct Case {
    i64 N, V;
    double eps;
    std::int32_t ignore;
  };
  for (const Case& cs : {Case{13, 37, 0.0, -100}, Case{13, 37, 0.1, -100}, Case{7, 1, 0.1, -100},
                         Case{64, 301, 0.2, 0}}) {
    const i64 N = cs.N, V = cs.V;
    auto x = rand_arr<T>(N * V, 111, -4.0, 4.0);
    std::mt19937 gen(112);
    std::vector<std::int32_t> t(N);
    for (i64 n = 0; n < N; ++n) t[n] = static_cast<std::int32_t>(gen() % V);
    if (N > 3) {
      t[1] = cs.ignore;
      t[N - 1] = cs.ignore;
    }
    const double scale = 1.0 / 9.0;
    CeRef ref = cross_entropy_ref(x.d, t, N, V, cs.eps, cs.ignore, static_cast<double>(T(scale)));
    const std::string name = str("N", N, " V", V, " eps", cs.eps, " ignore", cs.ignore);
    std::vector<T> loss(N), lse(N), dl(N * V, T(7));
    const double total = cross_entropy_forward<T>(loss.data(), lse.data(), x.t.data(), t.data(), N,
                                                  V, T(cs.eps), cs.ignore);
    expect_close("ce loss " + name, loss.data(), ref.loss, tol<T>());
    Vec lse_counted(N);
    for (i64 n = 0; n < N; ++n) lse_counted[n] = t[n] == cs.ignore ? lse[n] : ref.lse[n];
    expect_close("ce logsumexp " + name, lse.data(), lse_counted, tol<T>());
    const double total_err = std::abs(total - ref.total) / std::max(1.0, std::abs(ref.total));
    report("ce total " + name, total_err);
    EXPECT_LE(total_err, tol<T>());
    for (i64 n = 0; n < N; ++n) {
      if (t[n] == cs.ignore) {
        EXPECT_EQ(loss[n], T(0));
      }
    }

    cross_entropy_backward<T>(dl.data(), x.t.data(), lse.data(), t.data(), N, V, T(cs.eps),
                              cs.ignore, T(scale));
    expect_close("ce dlogits " + name, dl.data(), ref.grad, tol<T>());
  }
}

TEST(CpuKernelsFd, CrossEntropyBackwardMatchesFiniteDifferences) {
  const i64 N = 7, V = 13;
  const double eps = 0.1, scale = 0.25;
  const std::int32_t ignore = 2;
  auto x = rand_arr<double>(N * V, 121, -3.0, 3.0);
  std::vector<std::int32_t> t = {4, 2, 12, 0, 2, 7, 1};  // class 2 is the ignored (pad) id
  Vec xv = x.d;
  auto loss = [&] {
    Vec l(N), lse(N);
    return scale * cross_entropy_forward<double>(l.data(), lse.data(), xv.data(), t.data(), N, V,
                                                 eps, ignore);
  };
  Vec l(N), lse(N), dl(N * V);
  cross_entropy_forward<double>(l.data(), lse.data(), xv.data(), t.data(), N, V, eps, ignore);
  cross_entropy_backward<double>(dl.data(), xv.data(), lse.data(), t.data(), N, V, eps, ignore,
                                 scale);
  const Vec fd = fd_grad(xv, loss);
  expect_close("ce dlogits vs fd", dl.data(), fd, 1e-6);
  for (i64 v = 0; v < V; ++v) EXPECT_EQ(dl[1 * V + v], 0.0) << "ignored row has no gradient";
}

// ---- attention -----------------------------------------------------------------------------

struct AttnCase {
  const char* name;
  i64 B, H, Tq, Tk, Dh;
  std::vector<std::int32_t> kv_len;  // empty: all keys valid
  bool causal;
  i64 q_offset;
  double p;  // dropout on the probabilities; 0: no keep mask
};

const std::vector<AttnCase>& attn_cases() {
  static const std::vector<AttnCase> cases = {
      {"cross_kv_len", 2, 3, 7, 13, 5, {13, 4}, false, 0, 0.0},
      {"self_causal_padded", 2, 2, 11, 11, 8, {11, 6}, true, 0, 0.0},
      {"causal_q_offset", 1, 3, 3, 13, 7, {}, true, 10, 0.0},
      {"causal_q_offset_kv_len", 2, 1, 5, 9, 4, {9, 6}, true, 4, 0.0},
      {"dropout_causal_padded", 2, 2, 7, 7, 6, {7, 5}, true, 0, 0.3},
      {"dropout_cross_dh3", 3, 2, 13, 37, 3, {37, 1, 20}, false, 0, 0.1},
      {"no_visible_key", 2, 1, 3, 5, 4, {0, 5}, false, 0, 0.0},
      {"single", 1, 1, 1, 1, 1, {}, false, 0, 0.0},
      // Above OpenBLAS's single-thread size: the heads-sequential path.
      {"large_sequential_path", 1, 2, 70, 70, 64, {70}, true, 0, 0.2},
  };
  return cases;
}

struct AttnRef {
  Vec out, probs, dq, dk, dv;
};

AttnRef attention_ref(const AttnCase& c, const Vec& q, const Vec& k, const Vec& v,
                      const std::vector<std::uint8_t>& keep, double ks, const Vec& dout) {
  const i64 B = c.B, H = c.H, Tq = c.Tq, Tk = c.Tk, Dh = c.Dh, ld = H * Dh;
  const double scale = 1 / std::sqrt(static_cast<double>(Dh));
  AttnRef r{Vec(B * Tq * ld, 0.0), Vec(B * H * Tq * Tk, 0.0), Vec(B * Tq * ld, 0.0),
            Vec(B * Tk * ld, 0.0), Vec(B * Tk * ld, 0.0)};
  for (i64 b = 0; b < B; ++b) {
    const i64 kv = c.kv_len.empty() ? Tk : std::min<i64>(c.kv_len[b], Tk);
    for (i64 h = 0; h < H; ++h) {
      for (i64 i = 0; i < Tq; ++i) {
        auto Q = [&](i64 d) { return q[(b * Tq + i) * ld + h * Dh + d]; };
        auto K = [&](i64 j, i64 d) { return k[(b * Tk + j) * ld + h * Dh + d]; };
        auto Vv = [&](i64 j, i64 d) { return v[(b * Tk + j) * ld + h * Dh + d]; };
        auto G = [&](i64 d) { return dout[(b * Tq + i) * ld + h * Dh + d]; };
        double* P = &r.probs[((b * H + h) * Tq + i) * Tk];
        auto kf = [&](i64 j) {
          return keep.empty() ? 1.0 : keep[((b * H + h) * Tq + i) * Tk + j] * ks;
        };
        std::vector<bool> vis(Tk);
        double mx = -1e300;
        for (i64 j = 0; j < Tk; ++j) {
          vis[j] = j < kv && (!c.causal || j <= i + c.q_offset);
          if (!vis[j]) continue;
          double s = 0;
          for (i64 d = 0; d < Dh; ++d) s += Q(d) * K(j, d);
          P[j] = s * scale;
          mx = std::max(mx, P[j]);
        }
        double sum = 0;
        for (i64 j = 0; j < Tk; ++j)
          if (vis[j]) sum += std::exp(P[j] - mx);
        for (i64 j = 0; j < Tk; ++j) P[j] = vis[j] ? std::exp(P[j] - mx) / sum : 0.0;
        for (i64 d = 0; d < Dh; ++d) {
          double o = 0;
          for (i64 j = 0; j < Tk; ++j) o += P[j] * kf(j) * Vv(j, d);
          r.out[(b * Tq + i) * ld + h * Dh + d] = o;
        }
        // Backward for this query row.
        Vec dP(Tk);
        double rs = 0;
        for (i64 j = 0; j < Tk; ++j) {
          double dpd = 0;
          for (i64 d = 0; d < Dh; ++d) {
            dpd += G(d) * Vv(j, d);
            r.dv[(b * Tk + j) * ld + h * Dh + d] += P[j] * kf(j) * G(d);
          }
          dP[j] = dpd * kf(j);
          rs += P[j] * dP[j];
        }
        for (i64 j = 0; j < Tk; ++j) {
          const double ds = P[j] * (dP[j] - rs) * scale;
          for (i64 d = 0; d < Dh; ++d) {
            r.dq[(b * Tq + i) * ld + h * Dh + d] += ds * K(j, d);
            r.dk[(b * Tk + j) * ld + h * Dh + d] += ds * Q(d);
          }
        }
      }
    }
  }
  return r;
}

TYPED_TEST(CpuKernels, AttentionForwardBackward) {
  using T = TypeParam;
  std::uint64_t seed = 131;
  for (const AttnCase& c : attn_cases()) {
    const i64 B = c.B, H = c.H, Tq = c.Tq, Tk = c.Tk, Dh = c.Dh, ld = H * Dh;
    const i64 np = B * H * Tq * Tk;
    auto q = rand_arr<T>(B * Tq * ld, seed++, -2.0, 2.0);
    auto k = rand_arr<T>(B * Tk * ld, seed++, -2.0, 2.0);
    auto v = rand_arr<T>(B * Tk * ld, seed++);
    auto dout = rand_arr<T>(B * Tq * ld, seed++);
    std::vector<std::uint8_t> keep;
    const double ks = c.p > 0 ? 1.0 / (1.0 - c.p) : 1.0;
    if (c.p > 0) {
      keep.resize(np);
      dropout_mask(keep.data(), np, static_cast<float>(c.p), 5, 6, 0);
    }
    const T kst = static_cast<T>(ks);
    AttnRef ref = attention_ref(c, q.d, k.d, v.d, keep, static_cast<double>(kst), dout.d);

    std::vector<T> out(B * Tq * ld, T(-7)), probs(np, T(-7));
    attention_forward<T>(out.data(), probs.data(), q.t.data(), k.t.data(), v.t.data(),
                         c.kv_len.empty() ? nullptr : c.kv_len.data(),
                         keep.empty() ? nullptr : keep.data(), kst, B, H, Tq, Tk, Dh, c.causal,
                         c.q_offset);
    const std::string name = c.name;
    expect_close("attn probs " + name, probs.data(), ref.probs, tol<T>());
    expect_close("attn out " + name, out.data(), ref.out, tol<T>());
    i64 masked = 0;
    for (i64 i = 0; i < np; ++i)
      if (ref.probs[i] == 0.0) {
        ++masked;
        EXPECT_EQ(probs[i], T(0)) << name << " masked probability at " << i;
      }
    if (!c.kv_len.empty() || c.causal) {
      EXPECT_GT(masked, 0) << name;
    }

    std::vector<T> dq(q.t.size(), T(-7)), dk(k.t.size(), T(-7)), dv(v.t.size(), T(-7)), scratch(np);
    attention_backward<T>(dq.data(), dk.data(), dv.data(), scratch.data(), dout.t.data(),
                          probs.data(), q.t.data(), k.t.data(), v.t.data(),
                          keep.empty() ? nullptr : keep.data(), kst, B, H, Tq, Tk, Dh);
    expect_close("attn dq " + name, dq.data(), ref.dq, tol<T>());
    expect_close("attn dk " + name, dk.data(), ref.dk, tol<T>());
    expect_close("attn dv " + name, dv.data(), ref.dv, tol<T>());
  }
}

TEST(CpuKernelsFd, AttentionBackwardMatchesFiniteDifferences) {
  // Causal with an offset, padding and dropout all at once, in fp64.
  const AttnCase c{"fd", 2, 2, 4, 6, 3, {6, 4}, true, 1, 0.3};
  const i64 B = c.B, H = c.H, Tq = c.Tq, Tk = c.Tk, Dh = c.Dh, ld = H * Dh;
  const i64 np = B * H * Tq * Tk;
  auto q = rand_arr<double>(B * Tq * ld, 141, -2.0, 2.0);
  auto k = rand_arr<double>(B * Tk * ld, 142, -2.0, 2.0);
  auto v = rand_arr<double>(B * Tk * ld, 143);
  auto G = rand_arr<double>(B * Tq * ld, 144);
  std::vector<std::uint8_t> keep(np);
  dropout_mask(keep.data(), np, 0.3f, 9, 10, 0);
  const double ks = 1.0 / 0.7;
  Vec qv = q.d, kv = k.d, vv = v.d;
  Vec out(B * Tq * ld), probs(np);
  auto forward = [&] {
    attention_forward<double>(out.data(), probs.data(), qv.data(), kv.data(), vv.data(),
                              c.kv_len.data(), keep.data(), ks, B, H, Tq, Tk, Dh, c.causal,
                              c.q_offset);
  };
  auto loss = [&] {
    forward();
    double l = 0;
    for (std::size_t i = 0; i < out.size(); ++i) l += out[i] * G.d[i];
    return l;
  };
  forward();
  Vec dq(qv.size()), dk(kv.size()), dv(vv.size()), scratch(np);
  attention_backward<double>(dq.data(), dk.data(), dv.data(), scratch.data(), G.d.data(),
                             probs.data(), qv.data(), kv.data(), vv.data(), keep.data(), ks, B, H,
                             Tq, Tk, Dh);
  const Vec fq = fd_grad(qv, loss), fk = fd_grad(kv, loss), fv = fd_grad(vv, loss);
  expect_close("attn dq vs fd", dq.data(), fq, 1e-6);
  expect_close("attn dk vs fd", dk.data(), fk, 1e-6);
  expect_close("attn dv vs fd", dv.data(), fv, 1e-6);
  // Keys beyond kv_len of batch 1 get no gradient at all.
  for (i64 j = 4; j < Tk; ++j)
    for (i64 c2 = 0; c2 < ld; ++c2) {
      EXPECT_EQ(dk[(1 * Tk + j) * ld + c2], 0.0);
      EXPECT_EQ(dv[(1 * Tk + j) * ld + c2], 0.0);
    }
}

TEST(CpuKernelsDeterminism, AttentionIndependentOfThreadCount) {
  for (const AttnCase& c : attn_cases()) {
    const i64 B = c.B, H = c.H, Tq = c.Tq, Tk = c.Tk, Dh = c.Dh, ld = H * Dh;
    const i64 np = B * H * Tq * Tk;
    auto q = rand_arr<float>(B * Tq * ld, 151);
    auto k = rand_arr<float>(B * Tk * ld, 152);
    auto v = rand_arr<float>(B * Tk * ld, 153);
    auto run = [&](int threads) {
      const int saved = omp_get_max_threads();
      omp_set_num_threads(threads);
      std::vector<float> out(B * Tq * ld), probs(np), dq(q.t.size()), dk(k.t.size()),
          dv(v.t.size()), scratch(np);
      attention_forward<float>(out.data(), probs.data(), q.t.data(), k.t.data(), v.t.data(),
                               c.kv_len.empty() ? nullptr : c.kv_len.data(), nullptr, 1.0f, B, H,
                               Tq, Tk, Dh, c.causal, c.q_offset);
      attention_backward<float>(dq.data(), dk.data(), dv.data(), scratch.data(), out.data(),
                                probs.data(), q.t.data(), k.t.data(), v.t.data(), nullptr, 1.0f, B,
                                H, Tq, Tk, Dh);
      omp_set_num_threads(saved);
      out.insert(out.end(), dq.begin(), dq.end());
      out.insert(out.end(), dk.begin(), dk.end());
      out.insert(out.end(), dv.begin(), dv.end());
      return out;
    };
    EXPECT_EQ(run(1), run(2)) << c.name;
  }
}

TEST(CpuKernelsDeterminism, BiasGradientIndependentOfThreadCount) {
  // Row blocks with a partial last block, columns with a partial last vector.
  const i64 rows = 1000, cols = 771;
  auto dout = rand_arr<float>(rows * cols, 161);
  auto run = [&](int threads) {
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    std::vector<float> db(cols, 0.5f);
    bias_backward_accumulate<float>(db.data(), dout.t.data(), rows, cols);
    omp_set_num_threads(saved);
    return db;
  };
  EXPECT_EQ(run(1), run(2));
  EXPECT_EQ(run(1), run(3));
}

// ---- dropout -------------------------------------------------------------------------------

TEST(Philox, KnownAnswerVectors) {
  // Random123 kat_vectors for philox4x32-10: (counter, key) -> output.
  struct Kat {
    std::uint32_t c[4], k[2], out[4];
  };
  const Kat kats[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
      {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
       {0xffffffffu, 0xffffffffu},
       {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
      {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
       {0xa4093822u, 0x299f31d0u},
       {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
  };
  for (const Kat& kat : kats) {
    const Philox4 r = philox4x32_10(kat.c[0], kat.c[1], kat.c[2], kat.c[3], kat.k[0], kat.k[1]);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(r.v[i], kat.out[i]) << "word " << i;
  }
}

TEST(Philox, DropoutMaskDeterministicAndSliceConsistent) {
  const i64 n = 100000;
  std::vector<std::uint8_t> full(n), again(n);
  dropout_mask(full.data(), n, 0.25f, 1234, 77, 0);
  dropout_mask(again.data(), n, 0.25f, 1234, 77, 0);
  EXPECT_EQ(full, again);

  // Sub-ranges at unaligned offsets, including ones inside a single Philox block.
  for (auto [off, len] : {std::pair<i64, i64>{5, 1001},
                          {0, 1},
                          {7, 3},
                          {1, 2},
                          {4, 4},
                          {n - 13, 13},
                          {12345, 50000}}) {
    std::vector<std::uint8_t> part(len);
    dropout_mask(part.data(), len, 0.25f, 1234, 77, static_cast<std::uint64_t>(off));
    EXPECT_TRUE(std::equal(part.begin(), part.end(), full.begin() + off))
        << "offset " << off << " len " << len;
  }

  // Thread count does not matter.
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  dropout_mask(again.data(), n, 0.25f, 1234, 77, 0);
  omp_set_num_threads(saved);
  EXPECT_EQ(full, again);

  // Another stream or seed gives a different mask.
  dropout_mask(again.data(), n, 0.25f, 1234, 78, 0);
  EXPECT_NE(full, again);
  dropout_mask(again.data(), n, 0.25f, 1235, 77, 0);
  EXPECT_NE(full, again);
}

TEST(Philox, DropoutKeepRate) {
  const i64 n = 100000;
  std::vector<std::uint8_t> keep(n);
  for (float p : {0.1f, 0.3f, 0.5f, 0.9f}) {
    dropout_mask(keep.data(), n, p, 42, 3, 999);
    double kept = 0;
    for (auto x : keep) kept += x;
    const double rate = kept / n;
    const double sigma = std::sqrt(p * (1 - p) / n);
    std::printf("  [keep_rate] p=%.1f rate=%.5f expected=%.5f\n", p, rate, 1 - p);
    EXPECT_NEAR(rate, 1 - p, 5 * sigma) << "p=" << p;
    for (auto x : keep) ASSERT_TRUE(x == 0 || x == 1);
  }
  dropout_mask(keep.data(), n, 0.0f, 42, 3, 0);
  EXPECT_EQ(std::count(keep.begin(), keep.end(), 1), n) << "p=0 keeps everything";
  dropout_mask(keep.data(), n, 1.0f, 42, 3, 0);
  EXPECT_EQ(std::count(keep.begin(), keep.end(), 0), n) << "p=1 drops everything";
}

TEST(Philox, UniformAndNormalDraws) {
  const i64 n = 100000;
  Vec u(n), z(n);
  philox_uniform(u.data(), n, 7, 1, 0);
  philox_normal(z.data(), n, 7, 1, 0);
  double su = 0, sz = 0, szz = 0;
  for (i64 i = 0; i < n; ++i) {
    ASSERT_GE(u[i], 0.0);
    ASSERT_LT(u[i], 1.0);
    ASSERT_TRUE(std::isfinite(z[i]));
    su += u[i];
    sz += z[i];
    szz += z[i] * z[i];
  }
  EXPECT_NEAR(su / n, 0.5, 5 * std::sqrt(1.0 / 12 / n));
  EXPECT_NEAR(sz / n, 0.0, 5 / std::sqrt(static_cast<double>(n)));
  EXPECT_NEAR(szz / n, 1.0, 5 * std::sqrt(2.0 / n));

  Vec part(100);
  philox_uniform(part.data(), 100, 7, 1, 333);
  EXPECT_TRUE(std::equal(part.begin(), part.end(), u.begin() + 333));
  philox_normal(part.data(), 100, 7, 1, 333);
  EXPECT_TRUE(std::equal(part.begin(), part.end(), z.begin() + 333));

  // The float uniforms are the numbers the dropout masks compare against p.
  std::vector<float> uf(1000);
  std::vector<std::uint8_t> keep(1000);
  philox_uniform_float(uf.data(), 1000, 8, 2, 3);
  dropout_mask(keep.data(), 1000, 0.4f, 8, 2, 3);
  for (i64 i = 0; i < 1000; ++i) {
    ASSERT_GE(uf[i], 0.0f);
    ASSERT_LT(uf[i], 1.0f);
    EXPECT_EQ(keep[i], uf[i] >= 0.4f ? 1 : 0);
  }
}

TYPED_TEST(CpuKernels, DropoutApply) {
  using T = TypeParam;
  const i64 n = 1009;
  auto x = rand_arr<T>(n, 161);
  std::vector<std::uint8_t> keep(n);
  dropout_mask(keep.data(), n, 0.3f, 1, 2, 3);
  const T sc = static_cast<T>(1.0 / 0.7);
  Vec ref(n);
  for (i64 i = 0; i < n; ++i) ref[i] = keep[i] ? x.d[i] * static_cast<double>(sc) : 0.0;
  std::vector<T> out(n);
  dropout_apply<T>(out.data(), x.t.data(), keep.data(), sc, n);
  expect_close("dropout_apply", out.data(), ref, tol<T>());
  for (i64 i = 0; i < n; ++i) {
    if (!keep[i]) {
      EXPECT_EQ(out[i], T(0));
    }
  }
}

}  // namespace
}  // namespace tr::cpu
