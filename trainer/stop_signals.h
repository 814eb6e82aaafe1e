// Graceful stop on SIGTERM, SIGUSR1 (Slurm preemption) and SIGINT: the training loop finishes
// the current step, writes a checkpoint and exits 0. A second SIGINT aborts at once.
#pragma once

namespace tr {

void install_stop_signals();
// True once a stop was requested (async-signal-safe flag).
bool stop_requested();
const char* stop_signal_name();

}  // namespace tr
