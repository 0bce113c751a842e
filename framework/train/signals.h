// SIGINT / SIGTERM / SIGHUP (a closed terminal) / SIGPIPE (a closed stdout) during training: a
// flag the trainer polls at the end of each step (and between evaluation batches), so that an
// interrupted run saves a checkpoint and exits cleanly instead of dying mid-write.
#pragma once

namespace strand::train {

// Installs handlers for SIGINT, SIGTERM, SIGHUP and SIGPIPE that only record the signal, and
// restores the previous handlers when destroyed. A second SIGINT, SIGTERM or SIGHUP before the
// flag is cleared ends the process with the default action (a second Ctrl-C does not wait for
// the step to finish); repeated SIGPIPEs do not (each later write to the closed pipe raises one).
class StopSignalGuard {
 public:
  StopSignalGuard();
  ~StopSignalGuard();
  StopSignalGuard(const StopSignalGuard&) = delete;
  StopSignalGuard& operator=(const StopSignalGuard&) = delete;

 private:
  struct Saved;
  Saved* saved_;
};

// The signal received since the last clear (SIGINT, SIGTERM, SIGHUP, SIGPIPE), or 0.
int stop_signal();
void clear_stop_signal();
// Sets the flag as a signal would (tests, and ranks that learn of a stop from another rank).
void request_stop(int signal_number);
// "SIGINT", "SIGTERM", "SIGHUP", "SIGPIPE", or "a signal".
const char* signal_name(int signal_number);

}  // namespace strand::train
