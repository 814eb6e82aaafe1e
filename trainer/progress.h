// What rank 0 shows while training: a one-line progress bar redrawn in place on a terminal
// (step, bar, ETA, loss, throughput), or plain greppable log lines otherwise, in the spirit of
// Marian's "Ep. 1 : Up. 200 : Cost 3.21 : 5120 words/s : gNorm 1.2".
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace tr {

struct ProgressRow {
  std::int64_t step = 0;
  std::int64_t epoch = 0;
  double loss = 0;
  double lr = 0;
  double grad_norm = 0;
  double samples_per_s = 0;
  double tokens_per_s = 0;  // 0 when not applicable (images)
};

class Progress {
 public:
  // bar: draw the bar (only honoured when `out` is a terminal). out null: silent (ranks > 0).
  Progress(std::int64_t total_steps, bool bar, std::FILE* out = stderr);
  // Called at every log step.
  void update(const ProgressRow& row);
  // A line that must not be overwritten by the bar (evaluation results, checkpoints).
  void message(const std::string& text);
  void finish();
  bool drawing_bar() const { return bar_; }

 private:
  std::string eta(std::int64_t step) const;
  std::int64_t total_;
  bool bar_;
  std::FILE* out_;
  bool bar_visible_ = false;
  std::int64_t first_step_ = -1;
  std::chrono::steady_clock::time_point first_time_;
};

}  // namespace tr
