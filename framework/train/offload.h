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
  // After the backward: forget every entry and start the file again from offset 0.
  void reset();

  const std::string& path() const { return path_; }
  int64_t bytes_written() const;  // since the last reset

  struct State;

 private:
  std::string path_;
  std::shared_ptr<State> state_;
};

// Removes the spill files in `dir` whose owner is gone (their flock is free). Returns how many.
int remove_stale_spill_files(const std::string& dir);

}  // namespace strand::train
