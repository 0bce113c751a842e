// Activation offloading to disk (memory.offload: disk): tensors saved for backward above a size
// go to a per-rank spill file on save and come back before use, through the saved-tensor hooks.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "framework/autograd/saved_tensor.h"

namespace strand::train {

struct OffloadOptions {
  std::string dir;                     // memory.offload_dir
  int rank = 0;                        // names the spill file
  int64_t min_bytes = int64_t{1} << 20;  // memory.offload_min_bytes: smaller tensors stay in memory
  // I/O window: the backward reads ahead up to this much, and the forward waits for the disk
  // when more than this much is saved but not yet written.
  int64_t prefetch_bytes = int64_t{64} << 20;
};

// Owns one spill file, DIR/spill-rank<R>-<pid>.bin, held under flock while the process lives
// and removed by the destructor (also when an error unwinds); a file whose lock is free belongs
// to a dead process and remove_stale_spill_files takes it. A background thread does the I/O:
// writes in save order, reads ahead during the backward in the reverse order (the order in which
// the backward unpacks), so the compute rarely waits on the disk. A failed write or read (a full
// disk) is an error at the next save or at the unpack, never a wrong value.
class DiskOffload {
 public:
  explicit DiskOffload(OffloadOptions options);
  ~DiskOffload();
  DiskOffload(const DiskOffload&) = delete;
  DiskOffload& operator=(const DiskOffload&) = delete;

  // Hooks for autograd::SavedTensorHooksGuard around one forward. Tensors whose storage is in
  // `keep` (the parameters) or that are smaller than min_bytes are kept as they are.
  autograd::SavedTensorHooks hooks();
  void keep_storages(std::vector<const void*> storages);
  // After the backward: forget every entry and start the file again from offset 0. Spilled
  // gradients must have been restored first.
  void reset();

  // Gradient offloading (memory.offload_gradients): spill_gradient queues param's gradient for
  // writing and drops the parameter's handle on it (the memory goes once the write is done);
  // called from the post-accumulate hook, when the gradient is final within a backward pass.
  // restore_gradients reads every spilled gradient back into its parameter's .grad, in spill
  // order: a parameter spilled twice in one pass (its accumulator ran twice) gets its pieces
  // summed in the order the accumulator would have added them, so the bits are the same.
  void spill_gradient(const Tensor& param);
  void restore_gradients();
  int64_t gradient_bytes_written() const;  // since the last reset

  const std::string& path() const { return path_; }
  int64_t bytes_written() const;  // since the last reset

  struct State;

 private:
  std::string path_;
  std::shared_ptr<State> state_;
};

// memory.offload_gradients around one backward pass: while it lives, every parameter's gradient
// goes to the spill file as soon as its accumulator has run (a post-accumulate hook); restore()
// reads them all back and removes the hooks. With a null offload it does nothing.
class GradientSpill {
 public:
  GradientSpill(DiskOffload* offload, const std::vector<Tensor>& params);
  ~GradientSpill();  // removes the hooks (an error unwinding the backward loses the gradients)
  GradientSpill(const GradientSpill&) = delete;
  GradientSpill& operator=(const GradientSpill&) = delete;
  void restore() const;

 private:
  void remove_hooks() const;
  DiskOffload* offload_;
  mutable std::vector<std::pair<Tensor, int>> hooks_;  // parameter, hook id
};

// Removes the spill files in `dir` whose owner is gone (their flock is free). Returns how many.
int remove_stale_spill_files(const std::string& dir);

}  // namespace strand::train
