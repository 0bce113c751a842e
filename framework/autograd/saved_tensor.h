// Tensors saved for backward. They pass through the pack/unpack hooks active when saved
// (activation offloading plugs in there), and remember the storage version: a saved tensor
// modified in place is an error at backward time, never a wrong gradient.
#pragma once
#include <any>
#include <functional>
#include <memory>

#include "framework/core/tensor.h"

namespace strand::autograd {

struct SavedTensorHooks {
  std::function<std::any(const Tensor&)> pack;
  std::function<Tensor(const std::any&)> unpack;
};

// Installs hooks for the scope; nested guards stack, the innermost wins.
class SavedTensorHooksGuard {
 public:
  explicit SavedTensorHooksGuard(SavedTensorHooks hooks);
  ~SavedTensorHooksGuard();
  SavedTensorHooksGuard(const SavedTensorHooksGuard&) = delete;
  SavedTensorHooksGuard& operator=(const SavedTensorHooksGuard&) = delete;
};

// The hooks a SavedTensor made now would use (the innermost guard's), or null when none is
// active; a guard that handles only some tensors hands the others to these.
const SavedTensorHooks* active_saved_tensor_hooks();

class SavedTensor {
 public:
  SavedTensor() = default;
  explicit SavedTensor(const Tensor& t);
  // Returns the saved tensor (without history); throws AutogradError naming `op` when the
  // tensor was modified in place after it was saved.
  Tensor unpack(const char* op) const;
  bool defined() const { return defined_; }

 private:
  bool defined_ = false;
  Tensor plain_;                                   // when no hooks were active
  std::any packed_;                                // what the pack hook returned
  std::function<Tensor(const std::any&)> unpack_;  // the matching unpack hook
  std::weak_ptr<Storage> storage_;
  uint64_t version_ = 0;
};

}  // namespace strand::autograd
