// The two kinds of failure the system distinguishes.
//
// UserError: something the user gave us is wrong (config, data, weights, checkpoint, command
// line). The executable prints its one-line message and exits with code 2.
// InternalError: a bug or a runtime fault of our own; exits nonzero with a different code.
#pragma once

#include <stdexcept>
#include <string>

namespace tr {

class UserError : public std::runtime_error {
 public:
  explicit UserError(const std::string& message) : std::runtime_error(message) {}
};

class InternalError : public std::logic_error {
 public:
  explicit InternalError(const std::string& message) : std::logic_error(message) {}
};

// Checks an internal invariant; failing it is a bug, never a user mistake.
#define TR_CHECK(cond, msg)                                                                     \
  do {                                                                                         \
    if (!(cond))                                                                               \
      throw ::tr::InternalError(std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": " + \
                                (msg));                                                        \
  } while (0)

}  // namespace tr
