// RUN_DIR/metrics.jsonl: one JSON object per line, appended by rank 0 at each log step and
// after each evaluation (DESIGN section 6). Flushed per line, so a killed run keeps its rows
// and `trainer plot` can read a live run.
#pragma once

#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

namespace tr {

// A resumed run continues from a checkpoint of step `step`, so the rows that a stopped or
// killed run logged after it belong to steps about to be trained again: keep only the rows of
// steps <= `step` (0: none), so that every step appears once and `trainer plot` shows one curve.
// A torn last line (a kill mid-write) is dropped too. Replaced via a temporary file and a
// rename; a missing file is left missing.
void truncate_metrics(const std::string& path, std::int64_t step);

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
