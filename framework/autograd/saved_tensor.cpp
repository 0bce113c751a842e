// Saved tensors: hook stack, packing, and the in-place check at unpack.
#include "framework/autograd/saved_tensor.h"

#include <vector>

#include "framework/core/error.h"

namespace strand::autograd {
namespace {
thread_local std::vector<SavedTensorHooks> g_hooks;
}

SavedTensorHooksGuard::SavedTensorHooksGuard(SavedTensorHooks hooks) { g_hooks.push_back(std::move(hooks)); }
SavedTensorHooksGuard::~SavedTensorHooksGuard() { g_hooks.pop_back(); }

const SavedTensorHooks* active_saved_tensor_hooks() { return g_hooks.empty() ? nullptr : &g_hooks.back(); }

SavedTensor::SavedTensor(const Tensor& t) : defined_(t.defined()) {
  if (!defined_) return;
  storage_ = t.storage();
  version_ = t.version();
  Tensor data = t.detach();
  if (g_hooks.empty()) {
    plain_ = std::move(data);
  } else {
    packed_ = g_hooks.back().pack(data);
    unpack_ = g_hooks.back().unpack;
  }
}

Tensor SavedTensor::unpack(const char* op) const {
  if (!defined_) return Tensor();
  if (auto s = storage_.lock()) {
    STRAND_CHECK(s->version() == version_, AutogradError, "backward of '", op,
                 "': a tensor it saved was modified in place afterwards (version ", s->version(),
                 ", saved at version ", version_, "); use an out-of-place op or clone it first");
  }
  return unpack_ ? unpack_(packed_) : plain_;
}

}  // namespace strand::autograd
