// Runs the `trainer` executable as a user would and captures its exit code and output.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace tr::testing {

struct CliResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together, in order
};

// TR_TRAINER overrides the build's executable (bench/gpu_check runs a bundle's copy).
inline std::string trainer_path() {
  if (const char* path = std::getenv("TR_TRAINER")) return path;
  return std::string(TR_BINARY_DIR) + "/trainer";
}

inline CliResult run_trainer(const std::string& args) {
  const std::string command = trainer_path() + " " + args + " 2>&1";
  CliResult result;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return result;
  std::array<char, 4096> buffer;
  std::size_t n;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0)
    result.output.append(buffer.data(), n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

inline int count_lines(const std::string& text) {
  int lines = 0;
  for (char c : text) lines += c == '\n';
  return lines;
}

// A fresh, empty directory for one test.
inline std::filesystem::path scratch_dir(const std::string& name) {
  auto dir =
      std::filesystem::temp_directory_path() / ("tr_e2e_" + name + "_" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace tr::testing
