// The stall watchdog: progress marks (lock-free atomics) and the thread that reads them.
#include "parallel/watchdog.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace strand::parallel {
namespace {

using Clock = std::chrono::steady_clock;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

// The last mark and what the rank has been doing since (static strings only: the watchdog
// thread reads the pointer while the main thread may replace it).
std::atomic<int64_t> g_last_mark_ns{now_ns()};
std::atomic<const char*> g_waiting_in{nullptr};
std::atomic<const char*> g_doing{"starting"};

std::string format_seconds(double s) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", s);
  return text;
}

}  // namespace

void note_progress(const char* what) {
  g_doing.store(what, std::memory_order_relaxed);
  g_last_mark_ns.store(now_ns(), std::memory_order_release);
}

WaitScope::WaitScope(const char* what) {
  g_waiting_in.store(what, std::memory_order_relaxed);
  g_last_mark_ns.store(now_ns(), std::memory_order_release);
}

WaitScope::~WaitScope() {
  g_waiting_in.store(nullptr, std::memory_order_relaxed);
  g_last_mark_ns.store(now_ns(), std::memory_order_release);
}

Watchdog::Watchdog(double timeout_s, int rank, int size) : timeout_s_(timeout_s), rank_(rank), size_(size) {
  if (timeout_s <= 0 || size <= 1) return;
  g_last_mark_ns.store(now_ns(), std::memory_order_release);
  thread_ = std::thread([this] { watch(); });
}

Watchdog::~Watchdog() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void Watchdog::watch() {
  // A tenth of the timeout, at most a second: the job ends soon after the timeout.
  const auto poll = std::chrono::duration<double>(std::min(1.0, timeout_s_ / 10.0));
  const auto timeout_ns = static_cast<int64_t>(timeout_s_ * 1e9);
  const auto poll_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(poll).count();
  std::unique_lock lock(mu_);
  int64_t woke_ns = now_ns();
  while (!stop_) {
    wake_.wait_for(lock, poll);
    if (stop_) return;
    // Waking far later than asked means this process itself was suspended (SIGSTOP, SIGTSTP):
    // its peers waited for it, not it for them, so the clock starts again.
    const int64_t slept_ns = now_ns() - woke_ns;
    woke_ns = now_ns();
    if (slept_ns > poll_ns + 1000000000) g_last_mark_ns.store(woke_ns, std::memory_order_release);
    const int64_t idle_ns = now_ns() - g_last_mark_ns.load(std::memory_order_acquire);
    if (idle_ns < timeout_ns) continue;
    const char* waiting = g_waiting_in.load(std::memory_order_relaxed);
    std::string line = "[rank " + std::to_string(rank_) + "] strand: error: no progress for " +
                       format_seconds(static_cast<double>(idle_ns / 100000000) / 10.0) + " s ";
    line += waiting != nullptr ? std::string("while waiting in ") + waiting +
                                     " (key 'parallel.timeout_s' = " + format_seconds(timeout_s_) +
                                     "): another of the " + std::to_string(size_) +
                                     " ranks has stopped or died; ending the job"
                               : std::string("while ") + g_doing.load(std::memory_order_relaxed) +
                                     " (key 'parallel.timeout_s' = " + format_seconds(timeout_s_) +
                                     "); ending the job";
    line += "\n";
    // Straight to the file descriptor: the main thread may hold stdio's locks.
    if (::write(STDERR_FILENO, line.data(), line.size()) < 0) {
    }
    std::_Exit(1);
  }
}

}  // namespace strand::parallel
