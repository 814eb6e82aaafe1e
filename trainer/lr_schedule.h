// Learning-rate schedules: pure functions of the step number, so a resumed run needs no
// scheduler state and every rank computes the same value.
//
// Steps count from 1 (step 1 is the first optimizer update). Every schedule starts with the
// same linear warmup over `warmup_steps` (none when 0):
//
//   step <= warmup_steps:  lr * step / warmup_steps          (reaches lr at step warmup_steps)
//
// and then continues as
//
//   constant:      lr
//   inverse_sqrt:  lr * sqrt(warmup_steps / step)  (Vaswani et al.; peak lr at the end of
//                  warmup). With warmup_steps 0 the decay is lr / sqrt(step), i.e. warmup_steps
//                  is taken as 1, so that step 1 still trains at lr rather than at 0.
//                  Vaswani's d^-0.5 * min(step^-0.5, step * W^-1.5) is this schedule with
//                  lr = (d * W)^-0.5.
//   cosine:        min_lr + (lr - min_lr) * (1 + cos(pi * t)) / 2,
//                  t = (step - warmup_steps) / (total_steps - warmup_steps),
//                  reaching min_lr at step total_steps and staying there afterwards.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tr {

enum class ScheduleType { constant, inverse_sqrt, cosine };

struct ScheduleConfig {
  ScheduleType type = ScheduleType::constant;
  double lr = 1e-3;  // peak learning rate
  std::int64_t warmup_steps = 0;
  double min_lr = 0.0;           // cosine only
  std::int64_t total_steps = 0;  // cosine only: the step at which min_lr is reached
};

// "constant", "inverse_sqrt", "cosine" <-> ScheduleType. Parsing an unknown name throws
// UserError naming train.schedule.type and the valid choices.
ScheduleType parse_schedule_type(std::string_view name);
const char* schedule_type_name(ScheduleType type);

// Throws UserError naming the key under `train.schedule.` and what was expected, e.g.
// "train.schedule.warmup_steps: expected >= 0, got -3". Fields a schedule does not use are
// not checked.
void validate_schedule(const ScheduleConfig& config);

// The learning rate for optimizer step `step` (>= 1). Validates the config first.
double learning_rate(const ScheduleConfig& config, std::int64_t step);

}  // namespace tr
