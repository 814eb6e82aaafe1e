#pragma once
// Where a device step spends its time, op by op (bench/train_step --profile). With profiling
// on, each timed op waits for the device before it starts and after it ends, so that the host
// clock measures that op's kernels alone; the waits slow the step down and change nothing it
// computes. Off (the default) an OpTimer costs one branch.
#include <string>
#include <utility>
#include <vector>

namespace tr {

namespace op_profile {
// `synchronize` waits for the device (synchronize_device(Device::cuda)). A library of its own
// (tr_op_profile, no dependencies) so that the CUDA kernels can time their parts.
void enable(bool on, void (*synchronize)());
bool enabled();
void reset();
// Accumulated seconds and calls per op name since the last reset, largest first.
struct Entry {
  std::string name;
  double seconds = 0;
  long calls = 0;
  int depth = 0;  // 0: an op; 1: a part of one (timed inside it, included in its time)
};
std::vector<Entry> totals();
}  // namespace op_profile

// Times the scope it lives in under `name` while profiling is on; a null name times nothing
// (for a scope that counts only in some cases).
class OpTimer {
 public:
  explicit OpTimer(const char* name);
  ~OpTimer();
  OpTimer(const OpTimer&) = delete;
  OpTimer& operator=(const OpTimer&) = delete;

 private:
  const char* name_;
  double start_ = -1;  // < 0: not timing
};

}  // namespace tr
