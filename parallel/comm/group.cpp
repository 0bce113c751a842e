// The world group (MPI under a launcher, else local), finalize(), and the single-process group.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <mutex>

#include "framework/core/error.h"
#include "parallel/comm/backends.h"
#include "parallel/comm/checks.h"
#include "parallel/comm/launcher.h"

namespace strand::parallel {
namespace {

using internal::check_all_to_all_shapes;
using internal::check_contiguous;
using internal::check_gather_shapes;
using internal::check_rank;
using internal::check_scatter_shapes;
using internal::overlaps;

// Note [Local messages]: a one-rank group can only message itself. Matching follows MPI: a
// receive takes the oldest unreceived message with its tag, and a message goes to the oldest
// posted receive still waiting for that tag. Ring code written for P ranks thus runs at P = 1.
struct PendingReceive {
  Tensor target;
  bool done = false;
};

struct Mailbox {
  std::map<int, std::deque<Tensor>> unreceived;                          // copies of sent tensors
  std::map<int, std::deque<std::shared_ptr<PendingReceive>>> waiting;  // posted, not yet matched
};

void deliver(const Tensor& message, PendingReceive& receive, int tag) {
  STRAND_CHECK(message.shape() == receive.target.shape() && message.dtype() == receive.target.dtype(),
               ShapeError, "local irecv: the message with tag ", tag, " is ", describe(message),
               " but the receive buffer is ", describe(receive.target));
  receive.target.copy_from(message);
  receive.done = true;
}

class CompletedRequest final : public Request {
 public:
  void wait() override {}
  bool test() override { return true; }
};

class LocalReceiveRequest final : public Request {
 public:
  LocalReceiveRequest(std::shared_ptr<PendingReceive> receive, int tag)
      : receive_(std::move(receive)), tag_(tag) {}
  void wait() override {
    // With one rank nobody else can send: waiting would block forever.
    STRAND_CHECK(receive_->done, Error, "local irecv: no message with tag ", tag_,
                 " was sent; a one-rank group receives only what it sent to itself");
  }
  bool test() override { return receive_->done; }

 private:
  std::shared_ptr<PendingReceive> receive_;
  int tag_;
};

class LocalGroup final : public Group {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "local"; }

  std::unique_ptr<Request> isend(const Tensor& t, int dst, int tag) override {
    check_contiguous(t, "local isend", "t");
    check_rank(dst, 1, "local isend", "dst");
    Tensor message = t.copy_as(t.dtype(), t.device());  // the sender may reuse t at once
    auto& waiting = mailbox_.waiting[tag];
    if (!waiting.empty()) {
      std::shared_ptr<PendingReceive> receive = waiting.front();
      waiting.pop_front();
      deliver(message, *receive, tag);
    } else {
      mailbox_.unreceived[tag].push_back(std::move(message));
    }
    return std::make_unique<CompletedRequest>();
  }

  std::unique_ptr<Request> irecv(Tensor& t, int src, int tag) override {
    check_contiguous(t, "local irecv", "t");
    check_rank(src, 1, "local irecv", "src");
    auto receive = std::make_shared<PendingReceive>();
    receive->target = t;
    auto& unreceived = mailbox_.unreceived[tag];
    if (!unreceived.empty()) {
      Tensor message = std::move(unreceived.front());
      unreceived.pop_front();
      deliver(message, *receive, tag);
    } else {
      mailbox_.waiting[tag].push_back(receive);
    }
    return std::make_unique<LocalReceiveRequest>(std::move(receive), tag);
  }

  // With one rank every reduction is the identity and every gather a copy.
  void all_reduce(Tensor& t, ReduceOp) override { check_contiguous(t, "local all_reduce", "t"); }
  std::unique_ptr<Request> iall_reduce(Tensor& t, ReduceOp) override {
    check_contiguous(t, "local iall_reduce", "t");
    return std::make_unique<CompletedRequest>();
  }
  void all_gather(const Tensor& t, Tensor& out) override {
    check_gather_shapes(t, out, 1, "local all_gather");
    if (!overlaps(t, out)) out.copy_from(t);
  }
  void reduce_scatter(const Tensor& t, Tensor& out, ReduceOp) override {
    check_scatter_shapes(t, out, 1, "local reduce_scatter");
    if (!overlaps(t, out)) out.copy_from(t);
  }
  void all_to_all(const Tensor& t, Tensor& out) override {
    check_all_to_all_shapes(t, out, 1, "local all_to_all");
    if (!overlaps(t, out)) out.copy_from(t);
  }
  void broadcast(Tensor& t, int root) override {
    check_contiguous(t, "local broadcast", "t");
    check_rank(root, 1, "local broadcast", "root");
  }
  void barrier() override {}
  void all_reduce(std::span<double>, ReduceOp) override {}
  void all_reduce(std::span<int64_t>, ReduceOp) override {}

  std::unique_ptr<Group> split(int color, int) override {
    if (color < 0) return nullptr;  // MPI_UNDEFINED: this rank joins no group
    return std::make_unique<LocalGroup>();
  }

  [[noreturn]] void abort(const std::string& message, int code) override {
    if (!message.empty()) std::fprintf(stderr, "%s\n", message.c_str());
    std::fflush(stderr);
    std::fflush(stdout);
    std::_Exit(code);
  }

 private:
  Mailbox mailbox_;
};

// The process's world group. It is created on first use and lives until finalize() (or exit).
struct WorldState {
  std::mutex mutex;
  std::unique_ptr<Group> group;
  bool uses_mpi = false;
  bool finalized = false;
};

WorldState& world_state() {
  static WorldState state;
  return state;
}

void finalize_at_exit() { finalize(); }

}  // namespace

std::unique_ptr<Group> make_local_group() { return std::make_unique<LocalGroup>(); }

Group& world() {
  WorldState& state = world_state();
  std::lock_guard lock(state.mutex);
  if (!state.group) {
    STRAND_CHECK(!state.finalized, Error, "parallel::world: MPI was already finalized");
    const LaunchInfo launch = detect_launch();
    if (launch.use_mpi) {
      state.group = internal::make_mpi_world(launch.size, launch.source.c_str());
      state.uses_mpi = true;
      // A program that returns from main without finalize() would otherwise be reported as a
      // crashed rank by mpirun.
      std::atexit(finalize_at_exit);
    } else {
      state.group = make_local_group();
    }
  }
  return *state.group;
}

void finalize() {
  WorldState& state = world_state();
  std::lock_guard lock(state.mutex);
  if (!state.uses_mpi || state.finalized) return;
  state.group.reset();  // frees the communicator while MPI still runs
  internal::finalize_mpi();
  state.finalized = true;
}

int ranks_on_this_machine(Group& group) {
  if (group.size() == 1) return 1;
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  // Ranks with equal host names share a color (a 31-bit FNV-1a hash of the name).
  uint32_t hash = 2166136261u;
  for (const char* c = host; *c != 0; ++c) hash = (hash ^ static_cast<unsigned char>(*c)) * 16777619u;
  return group.split(static_cast<int>(hash & 0x7fffffffu), group.rank())->size();
}

}  // namespace strand::parallel
