// SIGINT / SIGTERM / SIGHUP / SIGPIPE / SIGUSR1 handlers that set an async-signal-safe flag for the loop.
#include "framework/train/signals.h"

#include <atomic>
#include <csignal>
#include <iterator>

namespace strand::train {

namespace {

// sig_atomic_t semantics through a lock-free atomic: the only thing the handler may touch.
std::atomic<int> g_stop_signal{0};
static_assert(std::atomic<int>::is_always_lock_free);

// The first signal asks for a clean stop; a second one (an impatient Ctrl-C) restores the
// default action and re-raises, so the process ends at once as it would without the handler.
extern "C" void record_stop_signal(int signal_number) {
  if (g_stop_signal.exchange(signal_number) != 0) {
    std::signal(signal_number, SIG_DFL);
    std::raise(signal_number);
  }
}

// A broken stdout (`strand train cfg | head -1`) raises SIGPIPE at every later write: the first
// asks for a stop like SIGTERM, the others are only the same news again (the write then fails
// with EPIPE, which the loop ignores), never a reason to die before the checkpoint is saved.
extern "C" void record_broken_pipe(int signal_number) {
  int none = 0;
  g_stop_signal.compare_exchange_strong(none, signal_number);
}

// SIGUSR1 is how launch/train.sh passes a stop on: Open MPI's mpirun forwards it to every rank
// without ending the job, as it does after SIGTERM (docs/reliability.md).
constexpr int kStopSignals[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGUSR1};

}  // namespace

struct StopSignalGuard::Saved {
  struct sigaction actions[std::size(kStopSignals)] {};
};

StopSignalGuard::StopSignalGuard() : saved_(new Saved) {
  for (size_t i = 0; i < std::size(kStopSignals); ++i) {
    // A hangup or a broken pipe that the parent chose to ignore (nohup, a launcher) stays
    // ignored: under nohup a closed terminal must not stop the run.
    const int sig = kStopSignals[i];
    if ((sig == SIGHUP || sig == SIGPIPE) && sigaction(sig, nullptr, &saved_->actions[i]) == 0 &&
        saved_->actions[i].sa_handler == SIG_IGN)
      continue;
    struct sigaction action {};
    action.sa_handler = kStopSignals[i] == SIGPIPE ? record_broken_pipe : record_stop_signal;
    sigemptyset(&action.sa_mask);
    // SA_RESTART: a signal arriving during a file write or an MPI call must not make it fail.
    action.sa_flags = SA_RESTART;
    sigaction(kStopSignals[i], &action, &saved_->actions[i]);
  }
}

StopSignalGuard::~StopSignalGuard() {
  for (size_t i = 0; i < std::size(kStopSignals); ++i) sigaction(kStopSignals[i], &saved_->actions[i], nullptr);
  delete saved_;
}

int stop_signal() { return g_stop_signal.load(); }
void clear_stop_signal() { g_stop_signal.store(0); }
void request_stop(int signal_number) { g_stop_signal.store(signal_number); }

const char* signal_name(int signal_number) {
  switch (signal_number) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    case SIGPIPE: return "SIGPIPE";
    case SIGUSR1: return "SIGUSR1";
    default: return "a signal";
  }
}

}  // namespace strand::train
