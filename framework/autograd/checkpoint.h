// Gradient checkpointing: run a piece of the forward without recording and rerun it, recording,
// inside the backward (full), or save chosen tensors as recipes rather than values (selective).
// docs/memory.md describes both.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "framework/autograd/saved_tensor.h"
#include "framework/core/tensor.h"

namespace strand::autograd {

// fn maps `inputs` to one tensor; it may also read `params` (leaves, which it reaches itself,
// e.g. a module's parameters) and anything it captures that needs no gradient.
using CheckpointFn = std::function<Tensor(const std::vector<Tensor>& inputs)>;

// Returns fn(inputs), run with grad mode off, so none of its intermediates are kept. When
// recording is on and an input or a parameter requires grad, the result gets a checkpoint node
// that saves only `inputs` (through autograd::SavedTensor, so the saved-tensor hooks see them);
// its backward reruns fn on detached copies of the inputs with grad mode on and backpropagates
// the incoming gradient through that graph to the inputs and to `params`. fn must be a pure
// function of its inputs (its random draws fixed by seeds, as dropout's are): then the rerun
// computes the same values, and the gradients equal the unchecked ones bit for bit.
Tensor checkpoint(const CheckpointFn& fn, const std::vector<Tensor>& inputs, const std::vector<Tensor>& params,
                  const char* name = "checkpoint");

// Hands a tensor that a piece computes to code outside the piece, with its gradient path (a loss
// on an intermediate, as attention transfer reads a layer's q and k). Outside a recording
// checkpoint's forward, receive(t) is called at once. Inside one (fn runs without recording),
// receive gets, once checkpoint() has built its node, t as an extra output of that node: a loss
// built on it sends its gradient to the node, which waits for it, and in the rerun the same call
// (fn reruns it) marks the recomputed, recorded t as a root of the rerun's backward beside the
// piece's output, seeded with that gradient; the rerun does not call receive. So the gradients
// are those of the unchecked graph bit for bit (the extra gradient is added where the unchecked
// backward adds it). fn must expose the same tensors in both runs, in the same order; exposing
// from a checkpoint nested inside a rerun is not supported.
void expose(const Tensor& t, const std::function<void(const Tensor&)>& receive);

// Selective checkpointing. Inside a RecomputeScope, recomputable(y, recipe) marks y: a node that
// saves y (or a view of it) afterwards saves the recipe instead of the value, and calls it at
// backward time (with grad mode off). The recipe must capture only tensors that are kept anyway
// (the input of a norm its node saves), so dropping y frees its memory. Other tensors pass to
// the hooks that were active outside the scope (activation offloading), or are kept as they are.
class RecomputeScope {
 public:
  // matmuls: whether outputs marked as a matmul's (recomputable's last argument) are recomputed
  // too. Selective checkpointing recomputes c_fc's output; the rerun of full checkpointing, which
  // holds one block's activations for that block's backward only, keeps it rather than run its
  // GEMM a third time.
  explicit RecomputeScope(bool matmuls = true);
  ~RecomputeScope();
  RecomputeScope(const RecomputeScope&) = delete;
  RecomputeScope& operator=(const RecomputeScope&) = delete;

 private:
  std::unique_ptr<SavedTensorHooksGuard> guard_;
};
Tensor recomputable(const Tensor& y, std::function<Tensor()> recipe, bool matmul = false);
// How to make x again without keeping it: x's own recipe when x is marked in the current scope
// (so recipes compose: c_fc's output is remade from ln_2's recipe, GELU's from c_fc's), else a
// recipe that returns x (and so keeps it). A recipe's result is made once in the backward and
// shared by every recipe built on it until the last saved view of it has been unpacked.
std::function<Tensor()> recipe_of(const Tensor& x);

}  // namespace strand::autograd
