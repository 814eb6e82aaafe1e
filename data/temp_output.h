// An output file written under a temporary name and renamed into place only when complete, so
// that a failed or interrupted `prepare` never leaves a half-written file at the output path
// (and never destroys a good file that was there before).
#pragma once

#include <string>

namespace tr {

class TempOutput {
 public:
  // Creates the output's missing parent directories; the temporary file is "<out>.tmp.<pid>"
  // in the same directory, so the final rename stays within one file system.
  explicit TempOutput(std::string out);
  TempOutput(const TempOutput&) = delete;
  TempOutput& operator=(const TempOutput&) = delete;
  // Removes the temporary file unless commit() succeeded.
  ~TempOutput();

  const std::string& path() const { return out_; }
  const std::string& temp_path() const { return temp_; }
  // Syncs the (closed) temporary file to disk and renames it onto the output path.
  void commit();

 private:
  std::string out_;
  std::string temp_;
  bool committed_ = false;
};

}  // namespace tr
