// The disk offload: the pack/unpack hooks, the spill file (flock'ed while its process lives) and
// the one I/O thread that writes in save order and reads ahead in the backward's order.
#include "framework/train/offload.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

#include "framework/autograd/node.h"
#include "framework/core/error.h"
#include "framework/ops/dispatch.h"
#include "framework/ops/elementwise.h"

namespace strand::train {
namespace {

constexpr const char* kPrefix = "spill-";
constexpr const char* kSuffix = ".bin";

enum class Where { Writing, OnDisk, Reading, Ready };

// One offloaded tensor: `span` elements of its storage from element `lo` go to the file; the
// view is rebuilt from them with the same shape, strides and (relative) offset.
struct Entry {
  Shape shape, strides;
  int64_t view_offset = 0;  // of the view inside the span
  int64_t span = 0;
  DType dtype = DType::F32;
  int64_t file_offset = 0, bytes = 0;
  Tensor held;   // the saved tensor until its write completes (unpack returns it meanwhile)
  Tensor ready;  // read back, until unpacked
  Where where = Where::Writing;
  bool gradient = false;  // a spilled gradient: read back only by restore_gradients
};

struct Ref {
  size_t index;
  uint64_t generation;
};

struct Job {
  bool write;
  size_t index;
};

std::string errno_text() { return std::strerror(errno); }

}  // namespace

struct DiskOffload::State {
  OffloadOptions options;
  std::string path;
  int fd = -1;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Job> jobs;
  std::vector<Entry> entries;
  // Spilled gradients in spill order: the entry and the parameter it goes back to.
  std::vector<std::pair<size_t, Tensor>> gradients;
  int64_t gradient_bytes = 0;
  std::set<const void*> keep;
  int64_t end = 0;  // next free offset in the file
  int64_t unwritten = 0;  // bytes saved but not yet on disk (held in memory meanwhile)
  uint64_t generation = 0;
  bool stop = false, busy = false;
  std::string error;  // the first I/O failure; every later save or unpack reports it
  std::thread worker;

  void fail_locked(const std::string& what) {
    if (error.empty()) error = what;
  }
  void check_locked() const {
    STRAND_CHECK(error.empty(), Error, "memory.offload: ", error);
  }

  // The I/O thread: one job at a time, in queue order (a read never passes its entry's write).
  void run() {
    std::unique_lock lock(mu);
    for (;;) {
      cv.wait(lock, [&] { return stop || !jobs.empty(); });
      if (jobs.empty()) return;
      const Job job = jobs.front();
      jobs.pop_front();
      busy = true;
      Entry& e = entries[job.index];
      const int64_t offset = e.file_offset, bytes = e.bytes;
      if (job.write) {
        const Tensor src = e.held;
        lock.unlock();
        const std::string err = transfer(true, src.raw_data(), offset, bytes);
        lock.lock();
        if (!err.empty()) fail_locked("cannot write the spill file " + path + ": " + err);
        Entry& done = entries[job.index];
        unwritten -= done.bytes;
        done.held = Tensor();  // the memory goes back now that the disk holds it
        if (done.where == Where::Writing) done.where = Where::OnDisk;
      } else {
        const DType dtype = e.dtype;
        const int64_t span = e.span;
        const bool failed = !error.empty();
        lock.unlock();
        Tensor t = Tensor::empty({span}, dtype);
        const std::string err = failed ? std::string() : transfer(false, t.raw_data(), offset, bytes);
        lock.lock();
        if (!err.empty()) fail_locked("cannot read the spill file " + path + ": " + err);
        entries[job.index].ready = t;
        entries[job.index].where = Where::Ready;
      }
      busy = false;
      cv.notify_all();
    }
  }

  std::string transfer(bool write, void* data, int64_t offset, int64_t bytes) const {
    char* p = static_cast<char*>(data);
    int64_t done = 0;
    while (done < bytes) {
      const ssize_t n = write ? ::pwrite(fd, p + done, static_cast<size_t>(bytes - done), offset + done)
                              : ::pread(fd, p + done, static_cast<size_t>(bytes - done), offset + done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errno_text();
      if (n == 0) return write ? "no space written" : "the file ended early";
      done += n;
    }
    return {};
  }

  // Schedules reads of entries below `index` (the backward unpacks in roughly reverse save
  // order) while the tensors read ahead stay under prefetch_bytes.
  void prefetch_locked(size_t index) {
    int64_t ahead = 0;
    for (const Entry& e : entries)
      if (e.where == Where::Reading || e.where == Where::Ready) ahead += e.bytes;
    for (size_t i = index; i-- > 0 && ahead < options.prefetch_bytes;) {
      Entry& e = entries[i];
      if (e.where != Where::OnDisk || e.gradient) continue;
      e.where = Where::Reading;
      jobs.push_back({false, i});
      ahead += e.bytes;
    }
    cv.notify_all();
  }

  std::any pack(const Tensor& t) {
    std::unique_lock lock(mu);
    check_locked();
    if (!t.device().is_cpu() || static_cast<int64_t>(t.nbytes()) < options.min_bytes || keep.count(t.storage().get()))
      return t;
    // The span of storage elements the view reaches; a view that reaches far more than its own
    // elements (a narrow slice of a wide tensor) is saved as a contiguous copy instead.
    int64_t lo = t.offset(), hi = t.offset();
    for (int64_t d = 0; d < t.dim(); ++d) {
      const int64_t reach = (t.shape()[d] - 1) * t.strides()[d];
      (reach < 0 ? lo : hi) += reach;
    }
    Tensor src = t;
    if (hi - lo + 1 > 2 * t.numel()) {
      lock.unlock();
      src = ops::contiguous_data(t);
      lock.lock();
      lo = hi = src.offset();
      hi += src.numel() - 1;
    }
    // The span as a flat tensor, so the writer reads its bytes from one data pointer.
    const Ref ref{enqueue_write_locked(src.as_strided({hi - lo + 1}, {1}, lo), src.shape(), src.strides(),
                                       src.offset() - lo, false),
                  generation};
    // Back-pressure: a forward that outruns the disk waits rather than holding every tensor.
    cv.wait(lock, [&] { return unwritten <= options.prefetch_bytes || !error.empty(); });
    check_locked();
    return ref;
  }

  Tensor unpack(const std::any& packed) {
    if (const Tensor* t = std::any_cast<Tensor>(&packed)) return *t;
    const Ref ref = std::any_cast<Ref>(packed);
    std::unique_lock lock(mu);
    STRAND_CHECK(ref.generation == generation, AutogradError,
                 "memory.offload: a saved tensor was used after its step's spill file was reset");
    check_locked();
    Entry& e = entries[ref.index];
    Tensor flat;
    if (e.held.defined()) {
      flat = e.held;  // not written yet: the tensor is still here
    } else {
      if (e.where == Where::OnDisk) {
        e.where = Where::Reading;
        jobs.push_back({false, ref.index});
      }
      prefetch_locked(ref.index);
      cv.wait(lock, [&] { return entries[ref.index].where == Where::Ready || !error.empty(); });
      check_locked();
      Entry& r = entries[ref.index];
      flat = r.ready;
      r.ready = Tensor();
      r.where = Where::OnDisk;  // a second unpack reads it again
    }
    const Entry& m = entries[ref.index];
    return flat.as_strided(m.shape, m.strides, flat.offset() + m.view_offset);
  }

  // Queues the write of `flat` (a run of storage elements, held until the disk has it), which the
  // entry reads back as the view (shape, strides) starting view_offset elements in; returns the
  // entry's index.
  size_t enqueue_write_locked(const Tensor& flat, Shape shape, Shape strides, int64_t view_offset, bool gradient) {
    Entry e;
    e.shape = std::move(shape);
    e.strides = std::move(strides);
    e.view_offset = view_offset;
    e.span = flat.numel();
    e.dtype = flat.dtype();
    e.bytes = e.span * static_cast<int64_t>(dtype_size(e.dtype));
    e.file_offset = end;
    e.gradient = gradient;
    end += e.bytes;
    e.held = flat;
    unwritten += e.bytes;
    entries.push_back(std::move(e));
    jobs.push_back({true, entries.size() - 1});
    cv.notify_all();
    return entries.size() - 1;
  }

  void spill_gradient(const Tensor& param) {
    Tensor g = param.grad();
    if (!g.defined()) return;
    if (!g.is_contiguous()) g = ops::contiguous_data(g);
    const Tensor flat = g.as_strided({g.numel()}, {1}, g.offset());
    std::unique_lock lock(mu);
    check_locked();
    const size_t index = enqueue_write_locked(flat, g.shape(), g.strides(), 0, true);
    gradients.emplace_back(index, param);
    gradient_bytes += entries[index].bytes;
    // The parameter lets go now; the entry holds the buffer until the disk has it.
    Tensor(param).zero_grad();
    g = Tensor();
    // Back-pressure, as for saved tensors: the backward waits rather than holding every gradient.
    cv.wait(lock, [&] { return unwritten <= options.prefetch_bytes || !error.empty(); });
    check_locked();
  }

  // Reads every spilled gradient back (one at a time, in spill order) and gives it to its
  // parameter: the first piece becomes the .grad, later pieces are added to it with the
  // accumulator's own kernel (axpy with alpha 1, exact), in the order the accumulator ran.
  void restore_gradients() {
    std::unique_lock lock(mu);
    drain_locked(lock);
    check_locked();
    std::vector<std::pair<size_t, Tensor>> todo = std::move(gradients);
    gradients.clear();
    for (auto& [index, param] : todo) {
      Entry& e = entries[index];
      e.where = Where::Reading;
      jobs.push_back({false, index});
      cv.notify_all();
      cv.wait(lock, [&] { return entries[index].where == Where::Ready || !error.empty(); });
      check_locked();
      Entry& r = entries[index];
      Tensor g = r.ready.as_strided(r.shape, r.strides, r.ready.offset());
      r.ready = Tensor();
      r.where = Where::OnDisk;
      lock.unlock();
      Tensor acc = param.grad();
      if (!acc.defined()) {
        Tensor(param).set_grad(g);
      } else {
        STRAND_CHECK(acc.is_contiguous() && acc.dtype() == g.dtype(), AutogradError,
                     "memory.offload_gradients: cannot add a spilled gradient back into ", describe(acc));
        ops::axpy_(acc, g, 1.0);
      }
      lock.lock();
    }
  }

  void drain_locked(std::unique_lock<std::mutex>& lock) {
    cv.wait(lock, [&] { return jobs.empty() && !busy; });
  }
};

DiskOffload::DiskOffload(OffloadOptions options) : state_(std::make_shared<State>()) {
  State& s = *state_;
  s.options = std::move(options);
  std::error_code ec;
  std::filesystem::create_directories(s.options.dir, ec);
  path_ = s.options.dir + "/" + kPrefix + "rank" + std::to_string(s.options.rank) + "-" + std::to_string(::getpid()) +
          kSuffix;
  s.path = path_;
  s.fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  STRAND_CHECK(s.fd >= 0, Error, "memory.offload_dir: cannot create the spill file ", path_, ": ", errno_text());
  // Held while this process lives: a later run tells this file from a dead run's by the lock.
  if (::flock(s.fd, LOCK_EX | LOCK_NB) != 0) {
    const std::string why = errno_text();
    ::close(s.fd);
    ::unlink(path_.c_str());
    throw Error("memory.offload_dir: cannot lock the spill file " + path_ + ": " + why);
  }
  s.worker = std::thread([st = state_] { st->run(); });
}

DiskOffload::~DiskOffload() {
  State& s = *state_;
  {
    std::lock_guard lock(s.mu);
    s.stop = true;
    s.jobs.clear();
    s.gradients.clear();
  }
  s.cv.notify_all();
  if (s.worker.joinable()) s.worker.join();
  ::unlink(path_.c_str());
  ::close(s.fd);
}

autograd::SavedTensorHooks DiskOffload::hooks() {
  std::shared_ptr<State> s = state_;
  return {[s](const Tensor& t) { return s->pack(t); }, [s](const std::any& p) { return s->unpack(p); }};
}

void DiskOffload::keep_storages(std::vector<const void*> storages) {
  std::lock_guard lock(state_->mu);
  state_->keep = std::set<const void*>(storages.begin(), storages.end());
}

void DiskOffload::reset() {
  State& s = *state_;
  std::unique_lock lock(s.mu);
  s.drain_locked(lock);
  STRAND_CHECK(s.gradients.empty(), AutogradError,
               "memory.offload_gradients: the spill file was reset with gradients still on it");
  s.entries.clear();
  s.end = 0;
  s.gradient_bytes = 0;
  s.unwritten = 0;
  ++s.generation;
  if (::ftruncate(s.fd, 0) != 0) s.fail_locked("cannot truncate the spill file " + s.path + ": " + errno_text());
  s.check_locked();
}

void DiskOffload::spill_gradient(const Tensor& param) { state_->spill_gradient(param); }

void DiskOffload::restore_gradients() { state_->restore_gradients(); }

int64_t DiskOffload::gradient_bytes_written() const {
  std::lock_guard lock(state_->mu);
  return state_->gradient_bytes;
}

int64_t DiskOffload::bytes_written() const {
  std::lock_guard lock(state_->mu);
  return state_->end;
}

GradientSpill::GradientSpill(DiskOffload* offload, const std::vector<Tensor>& params) : offload_(offload) {
  if (offload_ == nullptr) return;
  for (const Tensor& p : params) {
    // A weak handle: the hook lives in the parameter, which must not own itself.
    std::weak_ptr<TensorImpl> weak = p.impl();
    const int id = autograd::add_post_accumulate_hook(p, [offload, weak] {
      if (auto impl = weak.lock()) offload->spill_gradient(Tensor(impl));
    });
    hooks_.emplace_back(p, id);
  }
}

GradientSpill::~GradientSpill() { remove_hooks(); }

void GradientSpill::remove_hooks() const {
  for (const auto& [p, id] : hooks_) autograd::remove_post_accumulate_hook(p, id);
  hooks_.clear();
}

void GradientSpill::restore() const {
  if (offload_ == nullptr) return;
  remove_hooks();
  offload_->restore_gradients();
}

int remove_stale_spill_files(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return 0;
  int removed = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(kPrefix, 0) != 0 || name.size() < std::strlen(kSuffix) ||
        name.compare(name.size() - std::strlen(kSuffix), std::string::npos, kSuffix) != 0)
      continue;
    const int fd = ::open(entry.path().c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) continue;
    // A free lock: the process that made the file is gone (the kernel released it).
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0 && ::unlink(entry.path().c_str()) == 0) ++removed;
    ::close(fd);
  }
  return removed;
}

}  // namespace strand::train
