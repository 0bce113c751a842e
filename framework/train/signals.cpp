// SIGINT / SIGTERM handlers that set an async-signal-safe flag for the training loop.
#include "framework/train/signals.h"

#include <atomic>
#include <csignal>

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

}  // namespace

struct StopSignalGuard::Saved {
  struct sigaction int_action {};
  struct sigaction term_action {};
};

StopSignalGuard::StopSignalGuard() : saved_(new Saved) {
  struct sigaction action {};
  action.sa_handler = record_stop_signal;
  sigemptyset(&action.sa_mask);
  // SA_RESTART: a signal arriving during a file write or an MPI call must not make it fail.
  action.sa_flags = SA_RESTART;
  sigaction(SIGINT, &action, &saved_->int_action);
  sigaction(SIGTERM, &action, &saved_->term_action);
}

StopSignalGuard::~StopSignalGuard() {
  sigaction(SIGINT, &saved_->int_action, nullptr);
  sigaction(SIGTERM, &saved_->term_action, nullptr);
  delete saved_;
}

int stop_signal() { return g_stop_signal.load(); }
void clear_stop_signal() { g_stop_signal.store(0); }
void request_stop(int signal_number) { g_stop_signal.store(signal_number); }

const char* signal_name(int signal_number) {
  switch (signal_number) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    default: return "a signal";
  }
}

}  // namespace strand::train
