// Learning-rate schedules at their key steps (first step, end of warmup, the step after it,
// end of the schedule, after the end), their shape, and the errors for invalid configs.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "layers/error.h"
#include "trainer/lr_schedule.h"

namespace tr {
namespace {

struct ScheduleCase {
  ScheduleType type;
  double lr;
  std::int64_t warmup_steps;
  double min_lr;
  std::int64_t total_steps;
  std::int64_t step;
  double expected;
};

// Reference values: `/usr/bin/python3 tests/golden/make_optimizer_reference.py` (section
// test_lr_schedule.cpp), the definitions of trainer/lr_schedule.h evaluated independently
// with Python's math module. Fields: type, lr, warmup_steps, min_lr, total_steps, step, lr.
// clang-format off
constexpr ScheduleCase kScheduleCases[] = {
    {ScheduleType::constant, 0.0005, 0, 0.0, 0, 1, 0.0005},
    {ScheduleType::constant, 0.0005, 0, 0.0, 0, 2, 0.0005},
    {ScheduleType::constant, 0.0005, 0, 0.0, 0, 1000, 0.0005},
    {ScheduleType::constant, 0.0005, 4, 0.0, 0, 1, 0.000125},
    {ScheduleType::constant, 0.0005, 4, 0.0, 0, 3, 0.000375},
    {ScheduleType::constant, 0.0005, 4, 0.0, 0, 4, 0.0005},
    {ScheduleType::constant, 0.0005, 4, 0.0, 0, 5, 0.0005},
    {ScheduleType::inverse_sqrt, 0.001, 100, 0.0, 0, 1, 1e-05},
    {ScheduleType::inverse_sqrt, 0.001, 100, 0.0, 0, 50, 0.0005},
    {ScheduleType::inverse_sqrt, 0.001, 100, 0.0, 0, 100, 0.001},
    {ScheduleType::inverse_sqrt, 0.001, 100, 0.0, 0, 101, 0.000995037190209989},
    {ScheduleType::inverse_sqrt, 0.001, 100, 0.0, 0, 400, 0.0005},
    {ScheduleType::inverse_sqrt, 0.001, 100, 0.0, 0, 10000, 0.0001},
    {ScheduleType::inverse_sqrt, 0.001, 0, 0.0, 0, 1, 0.001},
    {ScheduleType::inverse_sqrt, 0.001, 0, 0.0, 0, 4, 0.0005},
    {ScheduleType::inverse_sqrt, 0.001, 0, 0.0, 0, 9, 0.0003333333333333333},
    {ScheduleType::cosine, 0.0003, 10, 1e-05, 100, 1, 2.9999999999999997e-05},
    {ScheduleType::cosine, 0.0003, 10, 1e-05, 100, 10, 0.0003},
    {ScheduleType::cosine, 0.0003, 10, 1e-05, 100, 11, 0.00029991166991776886},
    {ScheduleType::cosine, 0.0003, 10, 1e-05, 100, 55, 0.00015499999999999997},
    {ScheduleType::cosine, 0.0003, 10, 1e-05, 100, 99, 1.0088330082231116e-05},
    {ScheduleType::cosine, 0.0003, 10, 1e-05, 100, 100, 1e-05},
    {ScheduleType::cosine, 0.0003, 10, 1e-05, 100, 101, 1e-05},
    {ScheduleType::cosine, 0.0003, 10, 1e-05, 100, 1000, 1e-05},
    {ScheduleType::cosine, 0.001, 0, 0.0, 8, 1, 0.0009619397662556434},
    {ScheduleType::cosine, 0.001, 0, 0.0, 8, 2, 0.0008535533905932737},
    {ScheduleType::cosine, 0.001, 0, 0.0, 8, 4, 0.0005},
    {ScheduleType::cosine, 0.001, 0, 0.0, 8, 7, 3.806023374435663e-05},
    {ScheduleType::cosine, 0.001, 0, 0.0, 8, 8, 0.0},
    {ScheduleType::cosine, 0.001, 0, 0.0, 8, 9, 0.0},
};
// clang-format on

ScheduleConfig config_of(const ScheduleCase& c) {
  return {.type = c.type,
          .lr = c.lr,
          .warmup_steps = c.warmup_steps,
          .min_lr = c.min_lr,
          .total_steps = c.total_steps};
}

TEST(LrSchedule, MatchesReferenceAtKeySteps) {
  for (const ScheduleCase& c : kScheduleCases) {
    SCOPED_TRACE(std::string(schedule_type_name(c.type)) + " warmup " +
                 std::to_string(c.warmup_steps) + " step " + std::to_string(c.step));
    const double got = learning_rate(config_of(c), c.step);
    EXPECT_NEAR(got, c.expected, 1e-12 * c.expected);
  }
}

TEST(LrSchedule, WarmupEndsAtPeakAndDecayIsMonotone) {
  for (ScheduleType type : {ScheduleType::inverse_sqrt, ScheduleType::cosine}) {
    SCOPED_TRACE(schedule_type_name(type));
    const ScheduleConfig c{
        .type = type, .lr = 1e-3, .warmup_steps = 20, .min_lr = 1e-4, .total_steps = 200};
    EXPECT_EQ(learning_rate(c, 20), 1e-3);  // exactly the peak at the end of warmup
    double previous = 0.0;
    for (std::int64_t step = 1; step <= 20; ++step) {
      const double lr = learning_rate(c, step);
      EXPECT_GT(lr, previous) << "warmup step " << step;
      previous = lr;
    }
    for (std::int64_t step = 21; step <= 300; ++step) {
      const double lr = learning_rate(c, step);
      EXPECT_LE(lr, previous) << "step " << step;
      EXPECT_GT(lr, 0.0) << "step " << step;
      previous = lr;
    }
  }
}

TEST(LrSchedule, CosineStaysAtMinLrAfterTheEnd) {
  const ScheduleConfig c{.type = ScheduleType::cosine,
                         .lr = 1e-3,
                         .warmup_steps = 5,
                         .min_lr = 2e-5,
                         .total_steps = 50};
  EXPECT_GT(learning_rate(c, 49), 2e-5);
  for (std::int64_t step : {50, 51, 1000, 1000000}) EXPECT_EQ(learning_rate(c, step), 2e-5);
}

TEST(LrSchedule, CosineWithWarmupAsLongAsTheRunEndsAtPeakThenMinLr) {
  const ScheduleConfig c{.type = ScheduleType::cosine,
                         .lr = 1e-3,
                         .warmup_steps = 10,
                         .min_lr = 1e-5,
                         .total_steps = 10};
  EXPECT_EQ(learning_rate(c, 10), 1e-3);
  EXPECT_EQ(learning_rate(c, 11), 1e-5);
}

TEST(LrSchedule, TypeNamesRoundTrip) {
  for (ScheduleType type :
       {ScheduleType::constant, ScheduleType::inverse_sqrt, ScheduleType::cosine}) {
    EXPECT_EQ(parse_schedule_type(schedule_type_name(type)), type);
  }
}

std::string user_error(const ScheduleConfig& c) {
  try {
    validate_schedule(c);
  } catch (const UserError& e) {
    return e.what();
  }
  return "(no UserError)";
}

TEST(LrSchedule, InvalidConfigsAreUserErrorsNamingTheKey) {
  const ScheduleConfig cosine{.type = ScheduleType::cosine,
                              .lr = 1e-3,
                              .warmup_steps = 10,
                              .min_lr = 0.0,
                              .total_steps = 100};
  ScheduleConfig c = cosine;
  c.warmup_steps = -3;
  EXPECT_EQ(user_error(c), "train.schedule.warmup_steps: expected >= 0, got -3");
  c = cosine;
  c.lr = 0.0;
  EXPECT_EQ(user_error(c), "train.schedule.lr: expected > 0, got 0");
  c.lr = std::nan("");
  EXPECT_EQ(user_error(c), "train.schedule.lr: expected > 0, got nan");
  c = cosine;
  c.min_lr = 2e-3;
  EXPECT_EQ(user_error(c), "train.schedule.min_lr: expected in [0, lr = 0.001], got 0.002");
  c = cosine;
  c.total_steps = 0;
  EXPECT_EQ(user_error(c), "train.schedule.total_steps: expected >= 1, got 0");
  c = cosine;
  c.total_steps = 5;
  EXPECT_EQ(user_error(c), "train.schedule.total_steps: expected >= warmup_steps (10), got 5");
  // learning_rate validates too, so an unchecked config cannot produce a wrong rate.
  EXPECT_THROW(learning_rate(c, 1), UserError);
  try {
    parse_schedule_type("linear");
    ADD_FAILURE() << "no UserError";
  } catch (const UserError& e) {
    EXPECT_EQ(std::string(e.what()),
              "train.schedule.type: expected one of constant, inverse_sqrt, cosine, got 'linear'");
  }
}

TEST(LrSchedule, FieldsAScheduleDoesNotUseAreNotChecked) {
  // total_steps and min_lr belong to cosine; a constant schedule leaves them at any value.
  const ScheduleConfig c{.type = ScheduleType::constant,
                         .lr = 1e-3,
                         .warmup_steps = 0,
                         .min_lr = -1.0,
                         .total_steps = 0};
  EXPECT_EQ(user_error(c), "(no UserError)");
  EXPECT_EQ(learning_rate(c, 7), 1e-3);
}

TEST(LrSchedule, StepZeroIsAnInternalError) {
  const ScheduleConfig c{.type = ScheduleType::constant, .lr = 1e-3};
  EXPECT_THROW(learning_rate(c, 0), InternalError);
}

}  // namespace
}  // namespace tr
