#include "trainer/stop_signals.h"

#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <initializer_list>

namespace tr {

namespace {

volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void on_stop_signal(int signal) {
  if (signal == SIGINT && g_stop_signal == SIGINT) {
    static const char message[] = "\ntrainer: second SIGINT, aborting without a checkpoint\n";
    (void)!write(STDERR_FILENO, message, sizeof message - 1);
    std::_Exit(130);
  }
  g_stop_signal = signal;
}

}  // namespace

void install_stop_signals() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  // The handler only sets a flag: interrupted system calls (a write to a full stderr pipe, a
  // read) resume instead of failing with EINTR somewhere the loop would report as an error.
  action.sa_flags = SA_RESTART;
  for (int s : {SIGTERM, SIGUSR1, SIGINT}) sigaction(s, &action, nullptr);
}

bool stop_requested() {
  return g_stop_signal != 0;
}

const char* stop_signal_name() {
  switch (g_stop_signal) {
    case SIGTERM: return "SIGTERM";
    case SIGUSR1: return "SIGUSR1";
    case SIGINT: return "SIGINT";
    default: return "none";
  }
}

}  // namespace tr
