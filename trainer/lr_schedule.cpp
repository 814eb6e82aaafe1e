#include "trainer/lr_schedule.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <numbers>

#include "layers/error.h"

namespace tr {

namespace {

std::string number_text(double x) {
  char buffer[64];
  auto result = std::to_chars(buffer, buffer + sizeof(buffer), x);
  return std::string(buffer, result.ptr);
}

[[noreturn]] void fail(const char* key, const std::string& expected, const std::string& got) {
  throw UserError(std::string("train.schedule.") + key + ": expected " + expected + ", got " + got);
}

}  // namespace

ScheduleType parse_schedule_type(std::string_view name) {
  if (name == "constant") return ScheduleType::constant;
  if (name == "inverse_sqrt") return ScheduleType::inverse_sqrt;
  if (name == "cosine") return ScheduleType::cosine;
  std::string quoted = "'";
  quoted.append(name).append("'");
  fail("type", "one of constant, inverse_sqrt, cosine", quoted);
}

const char* schedule_type_name(ScheduleType type) {
  switch (type) {
    case ScheduleType::constant: return "constant";
    case ScheduleType::inverse_sqrt: return "inverse_sqrt";
    case ScheduleType::cosine: return "cosine";
  }
  return "?";
}

void validate_schedule(const ScheduleConfig& c) {
  // Written so that NaN fails: !(x > 0) rather than x <= 0.
  if (!(c.lr > 0.0 && std::isfinite(c.lr))) fail("lr", "> 0", number_text(c.lr));
  if (c.warmup_steps < 0) fail("warmup_steps", ">= 0", std::to_string(c.warmup_steps));
  if (c.type != ScheduleType::cosine) return;
  if (!(c.min_lr >= 0.0 && c.min_lr <= c.lr)) {
    fail("min_lr", "in [0, lr = " + number_text(c.lr) + "]", number_text(c.min_lr));
  }
  if (c.total_steps < 1) fail("total_steps", ">= 1", std::to_string(c.total_steps));
  if (c.total_steps < c.warmup_steps) {
    fail("total_steps", ">= warmup_steps (" + std::to_string(c.warmup_steps) + ")",
         std::to_string(c.total_steps));
  }
}

double learning_rate(const ScheduleConfig& c, std::int64_t step) {
  validate_schedule(c);
  TR_CHECK(step >= 1,
           "learning_rate asked for step " + std::to_string(step) + "; steps count from 1");
  const double s = static_cast<double>(step);
  const double warmup = static_cast<double>(c.warmup_steps);
  if (step <= c.warmup_steps) return c.lr * s / warmup;
  switch (c.type) {
    case ScheduleType::constant: return c.lr;
    case ScheduleType::inverse_sqrt: return c.lr * std::sqrt(std::max(warmup, 1.0) / s);
    case ScheduleType::cosine: {
      // step > warmup_steps here, so total_steps == warmup_steps lands in the first branch.
      if (step >= c.total_steps) return c.min_lr;
      const double t = (s - warmup) / static_cast<double>(c.total_steps - c.warmup_steps);
      return c.min_lr + (c.lr - c.min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * t));
    }
  }
  return c.lr;
}

}  // namespace tr
