// Runs the `trainer` executable as a child process the test controls: signals while it trains,
// kill -9 at chosen moments, a file-size limit (RLIMIT_FSIZE) to simulate a full disk.
// cli_runner.h's popen cannot do these (no pid, no limits before exec).
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "e2e/cli_runner.h"

namespace tr::testing {

struct ChildOptions {
  // Largest file the child may write, in bytes (0 = no limit). SIGXFSZ is ignored, so a write
  // past it fails with EFBIG as on a full disk instead of killing the process.
  long long file_size_limit = 0;
  // Runs `launcher... trainer args...` instead (e.g. {"mpirun", "-np", "2"}); signals then go
  // to the launcher, which forwards them (Open MPI's mpirun forwards SIGUSR1).
  std::vector<std::string> launcher;
};

class TrainerProcess {
 public:
  // Starts `trainer args...` with stdout and stderr to `log` (truncated).
  TrainerProcess(const std::vector<std::string>& args, const std::filesystem::path& log,
                 ChildOptions options = {})
      : log_(log) {
    std::vector<std::string> argv_strings = options.launcher;
    argv_strings.push_back(trainer_path());
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    pid_ = fork();
    if (pid_ == 0) {
      const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        ::close(fd);
      }
      if (options.file_size_limit > 0) {
        ::signal(SIGXFSZ, SIG_IGN);  // kept across exec: writes fail with EFBIG instead
        const rlimit limit{static_cast<rlim_t>(options.file_size_limit),
                           static_cast<rlim_t>(options.file_size_limit)};
        setrlimit(RLIMIT_FSIZE, &limit);
      }
      std::vector<char*> argv;
      for (std::string& s : argv_strings) argv.push_back(s.data());
      argv.push_back(nullptr);
      execvp(argv[0], argv.data());
      _exit(127);
    }
  }
  ~TrainerProcess() {
    if (pid_ > 0 && !done_) {
      ::kill(pid_, SIGKILL);
      wait(60);
    }
  }
  TrainerProcess(const TrainerProcess&) = delete;
  TrainerProcess& operator=(const TrainerProcess&) = delete;

  pid_t pid() const { return pid_; }
  void signal(int sig) const { ::kill(pid_, sig); }

  // The exit code, 128 + signal when killed by one, or -1 when still running after `seconds`
  // (the child is then killed).
  int wait(double seconds) {
    if (done_) return code_;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    int status = 0;
    while (true) {
      const pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) break;
      if (r < 0) return -1;
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
        done_ = true;
        return code_ = -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    done_ = true;
    code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return code_;
  }

  // True once it has exited (reaped), without waiting.
  bool exited() {
    if (done_) return true;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) != pid_) return false;
    done_ = true;
    code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return true;
  }

  std::string output() const {
    std::ifstream in(log_);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }

 private:
  pid_t pid_ = -1;
  bool done_ = false;
  int code_ = -1;
  std::filesystem::path log_;
};

}  // namespace tr::testing
