#include "trainer/metrics_log.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "layers/error.h"

namespace tr {

void truncate_metrics(const std::string& path, std::int64_t step) {
  std::ifstream in(path);
  if (!in) return;
  std::string kept;
  bool changed = false;
  for (std::string line; std::getline(in, line);) {
    const auto row = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    const bool keep = row.is_object() && row.contains("step") && row["step"].is_number() &&
                      row["step"].get<std::int64_t>() <= step;
    if (keep)
      kept += line + "\n";
    else
      changed = true;
  }
  in.close();
  if (!changed) return;
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << kept;
    out.close();
    if (!out) throw UserError(tmp + ": write failed (" + std::strerror(errno) + ")");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw UserError(path + ": cannot replace (" + ec.message() + ")");
}

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
    // Mid-run (a full disk): the run failed, exit 3 like a failed checkpoint.
    throw RunFailure(path_ + ": write failed (" + std::strerror(errno) + ")");
}

}  // namespace tr
