#include "trainer/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>

namespace tr {

Progress::Progress(std::int64_t total_steps, bool bar, std::FILE* out)
    : total_(total_steps), bar_(out && bar && isatty(fileno(out))), out_(out) {}

std::string Progress::eta(std::int64_t step) const {
  if (first_step_ < 0 || step <= first_step_) return "--:--";
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - first_time_).count();
  const double remaining = elapsed / static_cast<double>(step - first_step_) *
                           static_cast<double>(std::max<std::int64_t>(0, total_ - step));
  const auto s = static_cast<long long>(remaining);
  char text[32];
  if (s >= 3600)
    std::snprintf(text, sizeof text, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
  else
    std::snprintf(text, sizeof text, "%02lld:%02lld", s / 60, s % 60);
  return text;
}

void Progress::update(const ProgressRow& r) {
  if (!out_) return;
  if (first_step_ < 0) {
    first_step_ = r.step;
    first_time_ = std::chrono::steady_clock::now();
  }
  char throughput[64];
  if (r.tokens_per_s > 0)
    std::snprintf(throughput, sizeof throughput, "%.0f tok/s", r.tokens_per_s);
  else
    std::snprintf(throughput, sizeof throughput, "%.0f samples/s", r.samples_per_s);
  if (bar_) {
    constexpr int kWidth = 24;
    const double done = total_ > 0 ? static_cast<double>(r.step) / static_cast<double>(total_) : 0;
    const int filled = static_cast<int>(std::lround(done * kWidth));
    std::string bar(static_cast<std::size_t>(std::clamp(filled, 0, kWidth)), '#');
    bar.resize(kWidth, '.');
    std::fprintf(out_, "\r\033[K[%s] %lld/%lld  ETA %s  loss %.4f  %s", bar.c_str(),
                 static_cast<long long>(r.step), static_cast<long long>(total_),
                 eta(r.step).c_str(), r.loss, throughput);
    bar_visible_ = true;
  } else {
    std::fprintf(
        out_, "Ep. %lld : Up. %lld/%lld : loss %.4f : lr %.3e : gNorm %.3f : %s : ETA %s\n",
        static_cast<long long>(r.epoch), static_cast<long long>(r.step),
        static_cast<long long>(total_), r.loss, r.lr, r.grad_norm, throughput, eta(r.step).c_str());
  }
  std::fflush(out_);
}

void Progress::message(const std::string& text) {
  if (!out_) return;
  if (bar_visible_) std::fputs("\r\033[K", out_);
  std::fprintf(out_, "%s\n", text.c_str());
  bar_visible_ = false;
  std::fflush(out_);
}

void Progress::finish() {
  if (!out_) return;
  if (bar_visible_) std::fputc('\n', out_);
  bar_visible_ = false;
  std::fflush(out_);
}

}  // namespace tr
