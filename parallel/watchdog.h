// The stall watchdog: a rank that makes no progress for parallel.timeout_s seconds (a peer
// stopped with SIGSTOP, a dead peer the MPI runtime has not noticed, a hung file system) ends
// the job with one error line instead of waiting forever in a collective.
#pragma once
#include <condition_variable>
#include <mutex>
#include <thread>

namespace strand::parallel {

// Note [Progress marks]: progress is "a communication started or finished" (the MPI group
// marks both ends of every blocking call and every request's completion) or a mark of the
// caller's own. A rank waiting for a peer that never comes stops making marks; so does a rank
// that is itself stuck. Compute between two exchanges makes no marks, so the timeout must exceed
// the longest such stretch (a training step's forward, a checkpoint written while the other
// ranks wait): docs/reliability.md.

// Records progress now; `what` (a string literal) names what this rank does next.
void note_progress(const char* what);

// While one lives, this rank waits in `what` (a string literal, e.g. "mpi all_reduce"): marks
// progress at both ends, and the watchdog's message names it.
class WaitScope {
 public:
  explicit WaitScope(const char* what);
  ~WaitScope();
  WaitScope(const WaitScope&) = delete;
  WaitScope& operator=(const WaitScope&) = delete;
};

// A thread that checks the marks about every second (more often for short timeouts) and,
// after `timeout_s` seconds without one, prints
//   [rank R] strand: error: no progress for T s while waiting in WHAT (parallel.timeout_s = T) ...
// and ends this process with exit status 1; the launcher (mpirun) then ends the other ranks.
// It never touches MPI (which strand initialises for the main thread only). Nothing is started
// when timeout_s <= 0 or the job has one rank (no peer to wait for).
class Watchdog {
 public:
  Watchdog(double timeout_s, int rank, int size);
  ~Watchdog();  // stops the thread
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;
  bool running() const { return thread_.joinable(); }

 private:
  void watch();
  double timeout_s_;
  int rank_;
  int size_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace strand::parallel
