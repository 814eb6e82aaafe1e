#include "trainer/metrics_log.h"

#include <cerrno>
#include <cstring>

#include "layers/error.h"

namespace tr {

MetricsLog::MetricsLog(const std::string& path) : path_(path) {
  if (path.empty()) return;
  file_ = std::fopen(path.c_str(), "a");
  if (!file_) throw UserError(path + ": cannot open for writing (" + std::strerror(errno) + ")");
}

MetricsLog::~MetricsLog() {
  if (file_) std::fclose(file_);
}

void MetricsLog::write(const nlohmann::json& row) {
  if (!file_) return;
  const std::string line = row.dump() + "\n";
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_) != 0)
    throw UserError(path_ + ": write failed (" + std::strerror(errno) + ")");
}

}  // namespace tr
