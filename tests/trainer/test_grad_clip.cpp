// Gradient norm and clipping against torch.nn.utils.clip_grad_norm_, plus determinism of the
// underlying sum of squares.
#include <gtest/gtest.h>
#include <omp.h>

#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "layers/cpu/kernels.h"
#include "trainer/grad_clip.h"

namespace tr {
namespace {

// Reference values: `/usr/bin/python3 tests/golden/make_optimizer_reference.py` (section
// test_grad_clip.cpp): the step-1 gradients of the optimizer test (sizes 1, 7, 13), then
//   norm = torch.nn.utils.clip_grad_norm_(params, max_norm=1.0)
// in float64 and float32; kClippedGrads* are the gradients afterwards.
// Produced with torch 1.13.0a0.
// clang-format off
constexpr double kClipNorm64 = 1.418350714738777;
constexpr double kClippedGrads64[] = {
    -0.04406523385598392, 0.17626093542393567, 0.3084566369918874, -0.3084566369918874,
    -0.17626093542393567, -0.04406523385598392, 0.08813046771196784, 0.2203261692799196,
    -0.35252187084787134, -0.2203261692799196, -0.08813046771196784, 0.04406523385598392,
    0.17626093542393567, 0.3084566369918874, -0.3084566369918874, -0.17626093542393567,
    -0.04406523385598392, 0.08813046771196784, 0.2203261692799196, 0.35252187084787134,
    -0.2643914031359035,
};
constexpr double kClipNorm32 = 1.4183506965637207;
constexpr float kClippedGrads32[] = {
    -0.044065237f, 0.176260948f, 0.308456659f, -0.308456659f,
    -0.176260948f, -0.044065237f, 0.0881304741f, 0.220326185f,
    -0.352521896f, -0.220326185f, -0.0881304741f, 0.044065237f,
    0.176260948f, 0.308456659f, -0.308456659f, -0.176260948f,
    -0.044065237f, 0.0881304741f, 0.220326185f, 0.352521896f,
    -0.264391422f,
};
// clang-format on

constexpr std::array<std::int64_t, 3> kSizes = {1, 7, 13};

// Same formula as the Python script (exact dyadic rationals).
double grad_value(int i, int j) {
  return ((5 * i + 3 * j + 7) % 17 - 8) / 16.0;
}

class TestGrads {
 public:
  explicit TestGrads(DType dtype) {
    for (int i = 0; i < 3; ++i) {
      init_parameter(params_[i], std::string("p").append(std::to_string(i)), {kSizes[i]}, dtype,
                     i > 0);
      for (int j = 0; j < kSizes[i]; ++j) set(params_[i].grad, j, grad_value(i, j));
      list_.push_back(&params_[i]);
    }
  }
  TestGrads(const TestGrads&) = delete;
  TestGrads& operator=(const TestGrads&) = delete;

  const ParameterList& list() const { return list_; }
  Parameter& operator[](int i) { return params_[i]; }
  std::vector<double> grads() const {
    std::vector<double> out;
    for (int i = 0; i < 3; ++i) {
      const Tensor& g = params_[i].grad;
      for (int j = 0; j < kSizes[i]; ++j) {
        out.push_back(g.dtype() == DType::f64 ? g.data<double>()[j] : g.data<float>()[j]);
      }
    }
    return out;
  }
  static void set(Tensor& t, int j, double x) {
    if (t.dtype() == DType::f64) {
      t.data<double>()[j] = x;
    } else {
      t.data<float>()[j] = static_cast<float>(x);
    }
  }

 private:
  std::array<Parameter, 3> params_;
  ParameterList list_;
};

double unclipped_norm() {
  double sum = 0.0;
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < kSizes[i]; ++j) sum += grad_value(i, j) * grad_value(i, j);
  }
  return std::sqrt(sum);
}

template <typename T, std::size_t N>
void expect_relative(const std::vector<double>& actual, const T (&expected)[N], double rtol) {
  ASSERT_EQ(actual.size(), N);
  for (std::size_t k = 0; k < N; ++k) {
    // Gradients of 0 stay exactly 0 under scaling; the rest are compared relatively.
    EXPECT_LE(std::abs(actual[k] - expected[k]), rtol * std::abs(static_cast<double>(expected[k])))
        << "element " << k << ": got " << actual[k] << ", expected " << expected[k];
  }
}

TEST(GradClip, GlobalNormMatchesTorchAndLeavesGradientsAlone) {
  TestGrads grads(DType::f64);
  const std::vector<double> before = grads.grads();
  EXPECT_NEAR(global_grad_norm(grads.list()), kClipNorm64, 1e-12 * kClipNorm64);
  EXPECT_EQ(grads.grads(), before);
}

TEST(GradClip, ClipsLikeTorchFloat64) {
  TestGrads grads(DType::f64);
  const double norm = clip_grad_norm(grads.list(), 1.0);
  EXPECT_NEAR(norm, kClipNorm64, 1e-12 * kClipNorm64);
  expect_relative(grads.grads(), kClippedGrads64, 1e-12);
  // Clipped to max_norm, less the 1e-6 guard.
  EXPECT_NEAR(global_grad_norm(grads.list()), 1.0 / (1.0 + 1e-6 / norm), 1e-12);
}

TEST(GradClip, ClipsLikeTorchFloat32) {
  TestGrads grads(DType::f32);
  const double norm = clip_grad_norm(grads.list(), 1.0);
  EXPECT_NEAR(norm, kClipNorm32, 1e-6 * kClipNorm32);
  expect_relative(grads.grads(), kClippedGrads32, 1e-6);
}

TEST(GradClip, NoScalingWhenNormIsBelowMax) {
  TestGrads grads(DType::f32);
  const std::vector<double> before = grads.grads();
  const double norm = clip_grad_norm(grads.list(), 5.0);
  EXPECT_NEAR(norm, unclipped_norm(), 1e-12 * norm);
  EXPECT_EQ(grads.grads(), before);  // bitwise: no multiplication by 1 or anything near it
}

TEST(GradClip, CoefficientFollowsTorch) {
  EXPECT_EQ(clip_coefficient(0.5, 1.0), 1.0);
  EXPECT_EQ(clip_coefficient(0.0, 1.0), 1.0);
  EXPECT_EQ(clip_coefficient(4.0, 1.0), 1.0 / (4.0 + 1e-6));
  // At norm == max_norm the 1e-6 guard still scales, very slightly, as in torch.
  EXPECT_LT(clip_coefficient(1.0, 1.0), 1.0);
  EXPECT_EQ(clip_coefficient(std::numeric_limits<double>::infinity(), 1.0), 0.0);
  EXPECT_TRUE(std::isnan(clip_coefficient(std::nan(""), 1.0)));
}

TEST(GradClip, NonFiniteNormIsReturned) {
  TestGrads grads(DType::f64);
  grads[1].grad.data<double>()[2] = std::nan("");
  const std::vector<double> before = grads.grads();
  EXPECT_TRUE(std::isnan(clip_grad_norm(grads.list(), 1.0)));
  // Left alone (bitwise, NaN included) for the caller to skip the step.
  const std::vector<double> after = grads.grads();
  EXPECT_EQ(std::memcmp(after.data(), before.data(), after.size() * sizeof(double)), 0);

  TestGrads infinite(DType::f64);
  infinite[2].grad.data<double>()[0] = std::numeric_limits<double>::infinity();
  EXPECT_TRUE(std::isinf(clip_grad_norm(infinite.list(), 1.0)));
  EXPECT_EQ(infinite[1].grad.data<double>()[1], 0.0);  // scaled by 0, as torch does
}

TEST(GradClip, EmptyListHasNormZero) {
  EXPECT_EQ(global_grad_norm({}), 0.0);
  EXPECT_EQ(clip_grad_norm({}, 1.0), 0.0);
}

TEST(GradClip, ReducerTurnsTheLocalSumIntoTheGlobalOne) {
  // Four ranks holding identical gradients: the global sum is 4x the local one, the norm 2x,
  // and every rank scales by the coefficient of the global norm.
  TestGrads grads(DType::f64);
  const double local_sum = grad_sum_squares(grads.list());
  std::vector<double> seen;
  const SumSquaresReducer four_ranks = [&](double local) {
    seen.push_back(local);
    return 4.0 * local;
  };
  const double norm = clip_grad_norm(grads.list(), 1.0, four_ranks);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], local_sum);
  EXPECT_EQ(norm, std::sqrt(4.0 * local_sum));
  const double coefficient = 1.0 / (norm + 1e-6);
  const std::vector<double> got = grads.grads();
  std::size_t k = 0;
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < kSizes[i]; ++j, ++k) EXPECT_EQ(got[k], grad_value(i, j) * coefficient);
  }
}

template <typename T>
void check_sum_squares_deterministic() {
  // Several blocks and a ragged tail; the sum must be bitwise equal for any thread count.
  constexpr std::int64_t kN = 100003;
  std::vector<T> x(kN);
  long double reference = 0.0L;
  for (std::int64_t i = 0; i < kN; ++i) {
    x[i] = static_cast<T>(std::sin(0.001 * static_cast<double>(i)) * 3.0);
    reference += static_cast<long double>(x[i]) * static_cast<long double>(x[i]);
  }
  const int saved = omp_get_max_threads();
  std::vector<double> sums;
  for (int threads : {1, 2, 3, 4}) {
    omp_set_num_threads(threads);
    sums.push_back(cpu::sum_squares(x.data(), kN));
  }
  omp_set_num_threads(saved);
  for (double s : sums) EXPECT_EQ(std::memcmp(&s, &sums[0], sizeof(double)), 0);
  EXPECT_NEAR(sums[0], static_cast<double>(reference), 1e-12 * static_cast<double>(reference));
}

TEST(GradClip, SumSquaresIsDeterministicAcrossThreadCountsFloat32) {
  check_sum_squares_deterministic<float>();
}

TEST(GradClip, SumSquaresIsDeterministicAcrossThreadCountsFloat64) {
  check_sum_squares_deterministic<double>();
}

}  // namespace
}  // namespace tr
