// RUN_DIR/metrics.jsonl: one JSON object per line, appended by rank 0 at each log step and
// after each evaluation (DESIGN section 6). Flushed per line, so a killed run keeps its rows
// and `trainer plot` can read a live run.
#pragma once

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

namespace tr {

class MetricsLog {
 public:
  // Opens for appending (a resumed run continues the same file). Empty path: disabled.
  explicit MetricsLog(const std::string& path);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  void write(const nlohmann::json& row);

 private:
  std::FILE* file_ = nullptr;
  std::string path_;
};

}  // namespace tr
