// The two kinds of failure the system distinguishes.
//
// UserError: something the user gave us is wrong (config, data, weights, checkpoint, command
// line). The executable prints its one-line message and exits with code 2.
// RunFailure: the run itself failed (diverged, a rank died); exit code 3.
// InternalError: a bug of our own; exit code 1.
#pragma once

#include <cstdio>
#include <stdexcept>
#include <string>

namespace tr {

class UserError : public std::runtime_error {
 public:
  explicit UserError(const std::string& message) : std::runtime_error(message) {}
};

// A run that cannot go on for reasons of its own making (loss diverged, a rank died): exits
// with code 3 after saying why; checkpoints written before stay usable.
class RunFailure : public std::runtime_error {
 public:
  explicit RunFailure(const std::string& message) : std::runtime_error(message) {}
};

// Memory ran out (host or GPU) even after the caches were given back: a RunFailure (exit 3)
// whose message says how much was asked and held, and what to change.
class OutOfMemory : public RunFailure {
 public:
  explicit OutOfMemory(const std::string& message) : RunFailure(message) {}
};

// The message of an OutOfMemory: `what` ("GPU memory", "host memory") ran out asking for
// `requested` bytes more, while this process's tensors held `held` (at most `peak` so far).
inline std::string out_of_memory_message(const std::string& what, double requested, double held,
                                         double peak) {
  const auto gib = [](double bytes) {
    char text[32];
    std::snprintf(text, sizeof text, "%.2f GiB", bytes / (1024.0 * 1024.0 * 1024.0));
    return std::string(text);
  };
  return "out of " + what + ": " + gib(requested) + " more requested while this process's " +
         "tensors hold " + gib(held) + " (peak " + gib(peak) + "); lower train.micro_batch " +
         "(train.global_batch stays: more accumulation steps), or set train.recompute: " +
         "selective or full, or train.precision: bf16";
}

class InternalError : public std::logic_error {
 public:
  explicit InternalError(const std::string& message) : std::logic_error(message) {}
};

// Checks an internal invariant; failing it is a bug, never a user mistake.
#define TR_CHECK(cond, msg)                                                                     \
  do {                                                                                          \
    if (!(cond))                                                                                \
      throw ::tr::InternalError(std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": " + \
                                (msg));                                                         \
  } while (0)

}  // namespace tr
