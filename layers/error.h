// The two kinds of failure the system distinguishes.
//
// UserError: something the user gave us is wrong (config, data, weights, checkpoint, command
// line). The executable prints its one-line message and exits with code 2.
// RunFailure: the run itself failed (diverged, a rank died); exit code 3.
// InternalError: a bug of our own; exit code 1.
#pragma once

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
