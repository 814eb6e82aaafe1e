#include "layers/op_profile.h"

#include <algorithm>
#include <chrono>
#include <map>

namespace tr {

namespace {
bool g_enabled = false;
void (*g_sync)() = nullptr;
int g_depth = 0;  // timers open now
std::map<std::string, op_profile::Entry>& table() {
  static std::map<std::string, op_profile::Entry> t;
  return t;
}
double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

namespace op_profile {
void enable(bool on, void (*synchronize)()) {
  g_enabled = on && synchronize != nullptr;
  g_sync = synchronize;
}
bool enabled() {
  return g_enabled;
}
void reset() {
  table().clear();
}
std::vector<Entry> totals() {
  std::vector<Entry> out;
  for (const auto& [name, e] : table()) out.push_back(e);
  std::sort(out.begin(), out.end(),
            [](const Entry& a, const Entry& b) { return a.seconds > b.seconds; });
  return out;
}
}  // namespace op_profile

OpTimer::OpTimer(const char* name) : name_(name) {
  if (!g_enabled || name == nullptr) return;
  g_sync();
  ++g_depth;
  start_ = now_seconds();
}

OpTimer::~OpTimer() {
  if (start_ < 0) return;
  g_sync();
  op_profile::Entry& e = table()[name_];
  e.name = name_;
  e.seconds += now_seconds() - start_;
  ++e.calls;
  e.depth = --g_depth;
}

}  // namespace tr
