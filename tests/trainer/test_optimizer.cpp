// AdamW and SGD against torch.optim: 5 steps on three parameters of sizes 1, 7 and 13 (the
// first without weight decay), then the parameters and state tensors compared with PyTorch's.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <vector>

#include "layers/error.h"
#include "trainer/optimizer.h"

namespace tr {
namespace {

// Reference values: `/usr/bin/python3 tests/golden/make_optimizer_reference.py` (section
// test_optimizer.cpp), which runs
//   torch.optim.AdamW([{"params": [p1, p2], "weight_decay": 0.1},
//                      {"params": [p0], "weight_decay": 0.0}], lr=1e-2, betas=(0.9, 0.98),
//                     eps=1e-8)
//   torch.optim.SGD(<same groups, weight_decay 0.01>, lr=0.05, momentum=0.9)  (and momentum=0)
// for 5 steps in float64 and float32, from init_value and grad_value below.
// kAdamWVaryingLrParams64 sets the groups' lr to 1e-2, 3e-2, 5e-3, 2e-2, 1e-3 before each step.
// Produced with torch 1.13.0a0.
// clang-format off
constexpr double kAdamWParams64[] = {
    0.5026336715191375, -0.6963779307585236, 1.1002066947426308, -0.8549776660791539,
    0.6424472695866733, -1.0545821285472414, 0.8110029168506686, -0.5634823330672808,
    0.8927278612333561, -0.5940496720615736, 1.0684093981291338, -0.8395897461781554,
    0.5473845567477253, -1.014189534017992, 0.7619135676789695, -0.47693896916895057,
    0.9354378514627567, -0.6815120681568299, 1.1155970250661549, -0.8963795366518911,
    0.6306448322183836,
};
constexpr double kAdamWExpAvg64[] = {
    -0.023888124999999996, 0.0266275, 0.007785624999999998, 0.014858124999999993,
    0.0055787499999999934, -0.023888124999999996, -0.02456125, -0.043403124999999994,
    -0.01073625, -0.020015624999999995, -0.049482499999999985, 0.027300624999999995,
    0.0266275, 0.007785624999999998, 0.014858124999999993, 0.0055787499999999934,
    -0.023888124999999996, -0.02456125, -0.043403124999999994, 0.03337999999999999,
    0.04045249999999999,
};
constexpr double kAdamWExpAvgSq64[] = {
    0.008436850012500007, 0.009087593950000007, 0.008227591237500007, 0.009146534362500009,
    0.009319392075000009, 0.008436850012500007, 0.009075481300000007, 0.008918015937500006,
    0.009314621425000008, 0.009786685312500008, 0.009308536925000006, 0.008945332512500008,
    0.009087593950000007, 0.008227591237500007, 0.009146534362500009, 0.009319392075000009,
    0.008436850012500007, 0.009075481300000007, 0.008918015937500006, 0.009008307050000008,
    0.009729066075000008,
};
constexpr float kAdamWParams32[] = {
    0.502633631f, -0.696378052f, 1.10020673f, -0.854977727f,
    0.642447293f, -1.05458212f, 0.811003029f, -0.563482404f,
    0.892727852f, -0.594049692f, 1.06840944f, -0.839589894f,
    0.54738462f, -1.0141896f, 0.761913598f, -0.476938963f,
    0.935437977f, -0.681512117f, 1.11559713f, -0.89637965f,
    0.630644858f,
};
constexpr float kAdamWExpAvg32[] = {
    -0.023888126f, 0.0266274996f, 0.00778562576f, 0.0148581276f,
    0.00557875028f, -0.023888126f, -0.0245612487f, -0.04340313f,
    -0.0107362457f, -0.020015616f, -0.0494824983f, 0.0273006223f,
    0.0266274996f, 0.00778562576f, 0.0148581276f, 0.00557875028f,
    -0.023888126f, -0.0245612487f, -0.04340313f, 0.0333799981f,
    0.0404524989f,
};
constexpr float kAdamWExpAvgSq32[] = {
    0.00843684934f, 0.00908759423f, 0.0082275914f, 0.00914653484f,
    0.00931939203f, 0.00843684934f, 0.00907548144f, 0.00891801622f,
    0.00931462273f, 0.009786685f, 0.00930853654f, 0.00894533284f,
    0.00908759423f, 0.0082275914f, 0.00914653484f, 0.00931939203f,
    0.00843684934f, 0.00907548144f, 0.00891801622f, 0.00900830701f,
    0.00972906593f,
};
constexpr double kAdamWVaryingLrParams64[] = {
    0.4860908497218305, -0.6926642886011593, 1.0949994022255878, -0.8376592622839912,
    0.6454235077562008, -1.069418625009856, 0.8165104717430495, -0.5604500651590657,
    0.9081317986060686, -0.5847604980808875, 1.0534250206551339, -0.8565634740629614,
    0.5491040077790279, -1.0160067016207304, 0.7766395230102521, -0.47216795898596764,
    0.9174106491984434, -0.6736114839131752, 1.1159371349541871, -0.900760413830042,
    0.6435674997050626,
};
constexpr double kSgdParams64[] = {
    0.4862534375000001, -0.7193721946294328, 1.05906028902115, -0.8337955628084378,
    0.677145153406821, -1.0692332444682273, 0.852835124147155, -0.535308680511319,
    0.9457437948728937, -0.5236225837909598, 1.0828445000729934, -0.9029280912319995,
    0.5224224282368641, -1.0519905698515544, 0.7805374469177482, -0.44047000717284607,
    0.9176381521178478, -0.6373184232924011, 1.1411140603581815, -0.9688379932334406,
    0.6153310989626026,
};
constexpr double kSgdMomentumBuffer64[] = {
    -0.23888125000000002, 0.23780547600967142, 0.12237673047684051, 0.11408607545672209,
    0.08246794948935976, -0.2827701319102234, -0.2117113652858354, -0.45739783187588706,
    -0.06980717780053072, -0.224020805939395, -0.4513389473960384, 0.23826075231865956,
    0.2888869352477972, 0.035538249772026714, 0.18049197246628568, 0.03649463617504656,
    -0.20103979712922201, -0.2730091163715864, -0.38843786190441726, 0.29605369188646835,
    0.43079112273310194,
};
constexpr float kSgdParams32[] = {
    0.48625344f, -0.719372153f, 1.05906034f, -0.833795547f,
    0.677145183f, -1.0692333f, 0.852835178f, -0.535308659f,
    0.94574374f, -0.523622572f, 1.0828445f, -0.902928114f,
    0.522422373f, -1.05199063f, 0.780537367f, -0.44047001f,
    0.917638123f, -0.637318313f, 1.14111412f, -0.968838036f,
    0.615331113f,
};
constexpr float kSgdMomentumBuffer32[] = {
    -0.238881275f, 0.237805471f, 0.12237671f, 0.114086136f,
    0.0824679732f, -0.282770157f, -0.211711347f, -0.457397878f,
    -0.069807142f, -0.224020809f, -0.451338947f, 0.238260776f,
    0.288886905f, 0.0355382711f, 0.180491984f, 0.0364946723f,
    -0.201039836f, -0.273009062f, -0.388437897f, 0.296053648f,
    0.43079114f,
};
constexpr double kSgdNoMomentumParams64[] = {
    0.509375, -0.7013954733556843, 1.1128480946976156, -0.8759662215737095,
    0.6265312664013679, -1.0504573486714257, 0.8260770403908785, -0.5392186063224423,
    0.8852725340498843, -0.6047374742259756, 1.0848448439835356, -0.8323004896049415,
    0.5454826500822062, -1.0068447151467983, 0.7449753388955482, -0.4956590446927336,
    0.9445476488291994, -0.6701767077345903, 1.1440668603187099, -0.8977662856135563,
    0.604678143741212,
};
// clang-format on

constexpr std::array<std::int64_t, 3> kSizes = {1, 7, 13};
constexpr std::array<bool, 3> kDecay = {false, true, true};
constexpr int kSteps = 5;

// Same integer formulas as the Python script; the results are dyadic rationals, exact in both
// float and double, so C++ and PyTorch start from bitwise equal inputs.
double init_value(int i, int j) {
  const int k = 3 * i + 7 * j;
  return (k % 2 == 0 ? 1.0 : -1.0) * (0.5 + (k % 11) / 16.0);
}
double grad_value(int i, int j, int step) {
  return ((5 * i + 3 * j + 7 * step) % 17 - 8) / 16.0;
}

// Three parameters, owned here; the list points into this object, so it is not copyable.
class TestParams {
 public:
  explicit TestParams(std::array<DType, 3> dtypes) {
    for (int i = 0; i < 3; ++i) {
      init_parameter(params_[i], std::string("p").append(std::to_string(i)), {kSizes[i]}, dtypes[i],
                     kDecay[i]);
      for (int j = 0; j < kSizes[i]; ++j) set(params_[i].value, j, init_value(i, j));
      list_.push_back(&params_[i]);
    }
  }
  explicit TestParams(DType dtype) : TestParams({dtype, dtype, dtype}) {}
  TestParams(const TestParams&) = delete;
  TestParams& operator=(const TestParams&) = delete;

  const ParameterList& list() const { return list_; }
  Parameter& operator[](int i) { return params_[i]; }

  void set_grads(int step) {
    for (int i = 0; i < 3; ++i) {
      for (int j = 0; j < kSizes[i]; ++j) set(params_[i].grad, j, grad_value(i, j, step));
    }
  }

  static void set(Tensor& t, int j, double x) {
    if (t.dtype() == DType::f64) {
      t.data<double>()[j] = x;
    } else {
      t.data<float>()[j] = static_cast<float>(x);
    }
  }
  static double get(const Tensor& t, int j) {
    return t.dtype() == DType::f64 ? t.data<double>()[j] : t.data<float>()[j];
  }

 private:
  std::array<Parameter, 3> params_;
  ParameterList list_;
};

// Runs steps [first, last] with grads of that step, at lr(step).
template <typename LrOf>
void run_steps(Optimizer& opt, TestParams& params, int first, int last, LrOf lr_of) {
  for (int step = first; step <= last; ++step) {
    params.set_grads(step);
    opt.step(lr_of(step));
  }
}
double lr_1e2(int) {
  return 1e-2;
}
double lr_5e2(int) {
  return 0.05;
}

// Concatenation of tensor t_i (i = 0..2) in order, as the reference arrays are laid out.
template <typename GetTensor>
std::vector<double> flatten(GetTensor tensor_of) {
  std::vector<double> out;
  for (int i = 0; i < 3; ++i) {
    const Tensor& t = tensor_of(i);
    for (int j = 0; j < kSizes[i]; ++j) out.push_back(TestParams::get(t, j));
  }
  return out;
}

// Elementwise relative error, for parameters (all far from zero by construction).
template <typename T, std::size_t N>
void expect_relative(const std::vector<double>& actual, const T (&expected)[N], double rtol) {
  ASSERT_EQ(actual.size(), N);
  for (std::size_t k = 0; k < N; ++k) {
    const double e = expected[k];
    EXPECT_LE(std::abs(actual[k] - e), rtol * std::abs(e))
        << "element " << k << ": got " << actual[k] << ", expected " << e;
  }
}

// Error relative to the largest expected magnitude: state tensors (moments, momentum) pass
// through zero, where an elementwise relative error says nothing about the arithmetic.
template <typename T, std::size_t N>
void expect_normwise(const std::vector<double>& actual, const T (&expected)[N], double rtol) {
  ASSERT_EQ(actual.size(), N);
  double scale = 0.0;
  for (T e : expected) scale = std::max(scale, std::abs(static_cast<double>(e)));
  for (std::size_t k = 0; k < N; ++k) {
    EXPECT_LE(std::abs(actual[k] - expected[k]), rtol * scale)
        << "element " << k << ": got " << actual[k] << ", expected " << expected[k];
  }
}

std::vector<double> values(TestParams& p) {
  return flatten([&](int i) -> const Tensor& { return p[i].value; });
}
std::vector<double> state_values(const Optimizer& opt, const char* name) {
  return flatten([&](int i) -> const Tensor& { return opt.state(i, name); });
}

AdamWConfig reference_adamw() {
  return {.beta1 = 0.9, .beta2 = 0.98, .eps = 1e-8, .weight_decay = 0.1};
}
SGDConfig reference_sgd() {
  return {.momentum = 0.9, .weight_decay = 0.01};
}

TEST(AdamW, MatchesTorchFloat64) {
  TestParams params(DType::f64);
  AdamW opt(params.list(), reference_adamw());
  run_steps(opt, params, 1, kSteps, lr_1e2);
  EXPECT_EQ(opt.step_count(), kSteps);
  expect_relative(values(params), kAdamWParams64, 1e-12);
  expect_normwise(state_values(opt, "exp_avg"), kAdamWExpAvg64, 1e-12);
  expect_normwise(state_values(opt, "exp_avg_sq"), kAdamWExpAvgSq64, 1e-12);
}

TEST(AdamW, MatchesTorchFloat32) {
  TestParams params(DType::f32);
  AdamW opt(params.list(), reference_adamw());
  run_steps(opt, params, 1, kSteps, lr_1e2);
  expect_relative(values(params), kAdamWParams32, 1e-6);
  expect_normwise(state_values(opt, "exp_avg"), kAdamWExpAvg32, 1e-6);
  expect_normwise(state_values(opt, "exp_avg_sq"), kAdamWExpAvgSq32, 1e-6);
}

TEST(AdamW, UsesTheLearningRateOfEachStep) {
  TestParams params(DType::f64);
  AdamW opt(params.list(), reference_adamw());
  constexpr double kLrs[] = {1e-2, 3e-2, 5e-3, 2e-2, 1e-3};
  run_steps(opt, params, 1, kSteps, [&](int step) { return kLrs[step - 1]; });
  expect_relative(values(params), kAdamWVaryingLrParams64, 1e-12);
}

TEST(AdamW, DispatchesPerParameterDtype) {
  // One f64 parameter among f32 ones: each follows its own dtype's reference.
  TestParams params({DType::f32, DType::f64, DType::f32});
  AdamW opt(params.list(), reference_adamw());
  run_steps(opt, params, 1, kSteps, lr_1e2);
  const std::vector<double> got = values(params);
  for (std::size_t k = 0; k < got.size(); ++k) {
    const bool f64 = k >= 1 && k < 8;  // elements of p1
    const double e = f64 ? kAdamWParams64[k] : kAdamWParams32[k];
    EXPECT_LE(std::abs(got[k] - e), (f64 ? 1e-12 : 1e-6) * std::abs(e)) << "element " << k;
  }
  EXPECT_EQ(opt.state(1, "exp_avg").dtype(), DType::f64);
  EXPECT_EQ(opt.state(2, "exp_avg").dtype(), DType::f32);
}

TEST(AdamW, DecayIsDecoupledAndOnlyForDecayParameters) {
  // With zero gradients the moments stay 0 and the Adam step is 0 / (0 + eps) = 0, so the only
  // change is the decoupled decay: p * (1 - lr * wd) for decay parameters, nothing otherwise.
  TestParams params(DType::f64);
  AdamW opt(params.list(), reference_adamw());
  opt.step(1e-2);
  const double factor = 1.0 - 1e-2 * 0.1;
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < kSizes[i]; ++j) {
      const double expected = kDecay[i] ? init_value(i, j) * factor : init_value(i, j);
      EXPECT_EQ(TestParams::get(params[i].value, j), expected) << "p" << i << "[" << j << "]";
    }
  }
}

TEST(SGD, MatchesTorchFloat64) {
  TestParams params(DType::f64);
  SGD opt(params.list(), reference_sgd());
  run_steps(opt, params, 1, kSteps, lr_5e2);
  expect_relative(values(params), kSgdParams64, 1e-12);
  expect_normwise(state_values(opt, "momentum_buffer"), kSgdMomentumBuffer64, 1e-12);
}

TEST(SGD, MatchesTorchFloat32) {
  TestParams params(DType::f32);
  SGD opt(params.list(), reference_sgd());
  run_steps(opt, params, 1, kSteps, lr_5e2);
  expect_relative(values(params), kSgdParams32, 1e-6);
  expect_normwise(state_values(opt, "momentum_buffer"), kSgdMomentumBuffer32, 1e-6);
}

TEST(SGD, WithoutMomentumKeepsNoStateAndMatchesTorch) {
  TestParams params(DType::f64);
  SGD opt(params.list(), {.momentum = 0.0, .weight_decay = 0.01});
  EXPECT_TRUE(opt.state_names().empty());
  run_steps(opt, params, 1, kSteps, lr_5e2);
  expect_relative(values(params), kSgdNoMomentumParams64, 1e-12);
}

// A checkpoint restores the state tensors and the step count into a fresh optimizer; the run
// must then continue bit for bit (SGD in particular must not treat step 4 as a first step).
template <typename Opt, typename Config>
void check_resume_is_bitwise(const Config& config, double lr) {
  const auto lr_of = [lr](int) { return lr; };
  TestParams straight(DType::f64);
  Opt a(straight.list(), config);
  run_steps(a, straight, 1, kSteps, lr_of);

  TestParams first(DType::f64);
  Opt b(first.list(), config);
  run_steps(b, first, 1, 3, lr_of);

  TestParams resumed(DType::f64);
  Opt c(resumed.list(), config);
  for (int i = 0; i < 3; ++i) {
    resumed[i].value.copy_from(first[i].value);
    for (const std::string& name : b.state_names()) c.state(i, name).copy_from(b.state(i, name));
  }
  c.set_step_count(b.step_count());
  run_steps(c, resumed, 4, kSteps, lr_of);

  EXPECT_EQ(c.step_count(), a.step_count());
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(
        std::memcmp(resumed[i].value.raw(), straight[i].value.raw(), straight[i].value.bytes()), 0)
        << "parameter " << i;
    for (const std::string& name : a.state_names()) {
      EXPECT_EQ(
          std::memcmp(c.state(i, name).raw(), a.state(i, name).raw(), a.state(i, name).bytes()), 0)
          << name << " of parameter " << i;
    }
  }
}

TEST(AdamW, ResumeFromSavedStateIsBitwiseExact) {
  check_resume_is_bitwise<AdamW>(reference_adamw(), 1e-2);
}

TEST(SGD, ResumeFromSavedStateIsBitwiseExact) {
  check_resume_is_bitwise<SGD>(reference_sgd(), 0.05);
}

TEST(Optimizer, StateIsAllocatedOnceWithTheParameterShape) {
  TestParams params(DType::f32);
  AdamW opt(params.list(), reference_adamw());
  EXPECT_EQ(opt.state_names(), (std::vector<std::string>{"exp_avg", "exp_avg_sq"}));
  std::vector<const void*> buffers;
  for (int i = 0; i < 3; ++i) {
    for (const std::string& name : opt.state_names()) {
      const Tensor& s = opt.state(i, name);
      EXPECT_EQ(s.shape(), params[i].value.shape());
      EXPECT_EQ(s.dtype(), DType::f32);
      for (int j = 0; j < kSizes[i]; ++j) EXPECT_EQ(TestParams::get(s, j), 0.0);
      buffers.push_back(s.raw());
    }
  }
  const std::int64_t allocations = BufferPool::instance(Device::cpu).system_allocations();
  run_steps(opt, params, 1, kSteps, lr_1e2);
  EXPECT_EQ(BufferPool::instance(Device::cpu).system_allocations(), allocations);
  std::size_t k = 0;
  for (int i = 0; i < 3; ++i) {
    for (const std::string& name : opt.state_names())
      EXPECT_EQ(opt.state(i, name).raw(), buffers[k++]);
  }
}

TEST(Optimizer, ZeroGradClearsEveryGradient) {
  TestParams params(DType::f64);
  SGD opt(params.list(), reference_sgd());
  params.set_grads(1);
  opt.zero_grad();
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < kSizes[i]; ++j) EXPECT_EQ(TestParams::get(params[i].grad, j), 0.0);
  }
}

TEST(Optimizer, LargeParametersTakeTheParallelPathWithTheSameResult) {
  // 40000 elements run under OpenMP; elementwise updates must not depend on the thread count
  // and must equal the serial update of a small parameter holding the same leading values.
  constexpr std::int64_t kLarge = 40000;
  auto run = [](std::int64_t n, int threads) {
    Parameter p;
    init_parameter(p, "w", {n}, DType::f32, true);
    for (std::int64_t j = 0; j < n; ++j) {
      p.value.data<float>()[j] = static_cast<float>(init_value(1, static_cast<int>(j)));
      p.grad.data<float>()[j] = static_cast<float>(grad_value(1, static_cast<int>(j), 1));
    }
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    AdamW opt({&p}, reference_adamw());
    opt.step(1e-2);
    opt.step(1e-2);
    omp_set_num_threads(saved);
    return std::vector<float>(p.value.data<float>(), p.value.data<float>() + n);
  };
  const std::vector<float> one = run(kLarge, 1);
  const std::vector<float> three = run(kLarge, 3);
  const std::vector<float> small = run(7, 1);
  EXPECT_EQ(one, three);
  EXPECT_TRUE(std::equal(small.begin(), small.end(), one.begin()));
  EXPECT_NE(one[0], static_cast<float>(init_value(1, 0)));  // the update did happen
}

TEST(Optimizer, InvalidHyperparametersAreUserErrorsNamingTheKey) {
  TestParams params(DType::f64);
  const auto message = [&](auto make) -> std::string {
    try {
      make();
    } catch (const UserError& e) {
      return e.what();
    }
    return "(no UserError)";
  };
  EXPECT_EQ(message([&] { AdamW(params.list(), {.beta1 = 1.0}); }),
            "train.optimizer.beta1: expected in [0, 1), got 1");
  EXPECT_EQ(message([&] { AdamW(params.list(), {.beta2 = -0.5}); }),
            "train.optimizer.beta2: expected in [0, 1), got -0.5");
  EXPECT_EQ(message([&] { AdamW(params.list(), {.eps = std::nan("")}); }),
            "train.optimizer.eps: expected >= 0, got nan");
  EXPECT_EQ(message([&] { AdamW(params.list(), {.weight_decay = -0.1}); }),
            "train.optimizer.weight_decay: expected >= 0, got -0.1");
  EXPECT_EQ(message([&] { SGD(params.list(), {.momentum = -0.9}); }),
            "train.optimizer.momentum: expected >= 0, got -0.9");
}

TEST(Optimizer, UnknownStateNameIsAnInternalError) {
  TestParams params(DType::f64);
  SGD opt(params.list(), reference_sgd());
  EXPECT_THROW(opt.state(0, "exp_avg"), InternalError);
  EXPECT_THROW(opt.state(3, "momentum_buffer"), InternalError);
}

}  // namespace
}  // namespace tr
