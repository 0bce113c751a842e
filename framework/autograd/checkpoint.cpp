// Checkpoint node (rerun a piece of the forward in the backward) and recompute-on-unpack saved
// tensors (selective checkpointing).
#include "framework/autograd/checkpoint.h"

#include <any>
#include <memory>
#include <utility>

#include "framework/autograd/engine.h"
#include "framework/autograd/grad_mode.h"
#include "framework/autograd/node.h"
#include "framework/autograd/saved_tensor.h"
#include "framework/core/error.h"

namespace strand::autograd {
namespace {

class GradModeGuard {
 public:
  explicit GradModeGuard(bool on) : prev_(grad_enabled()) { set_grad_enabled(on); }
  ~GradModeGuard() { set_grad_enabled(prev_); }
  GradModeGuard(const GradModeGuard&) = delete;
  GradModeGuard& operator=(const GradModeGuard&) = delete;

 private:
  bool prev_;
};

// Keeps saved tensors as they are: the rerun's intermediates live only for this node's backward,
// so offloading them (the hooks outside) would only add traffic.
SavedTensorHooks plain_hooks() {
  return {[](const Tensor& t) { return std::any(t); }, [](const std::any& a) { return std::any_cast<Tensor>(a); }};
}

// What expose() sees: the innermost checkpoint forward or rerun it is called in, if any.
struct ExposeFrame {
  bool rerun = false;
  std::vector<Tensor> tensors;
  std::vector<std::function<void(const Tensor&)>> receivers;  // forward only
};
thread_local std::vector<ExposeFrame*> g_expose_frames;

class ExposeFrameGuard {
 public:
  explicit ExposeFrameGuard(bool rerun) {
    frame_.rerun = rerun;
    g_expose_frames.push_back(&frame_);
  }
  ~ExposeFrameGuard() { g_expose_frames.pop_back(); }
  ExposeFrameGuard(const ExposeFrameGuard&) = delete;
  ExposeFrameGuard& operator=(const ExposeFrameGuard&) = delete;
  ExposeFrame& frame() { return frame_; }

 private:
  ExposeFrame frame_;
};

class CheckpointBackward final : public Node {
 public:
  CheckpointBackward(const char* name, CheckpointFn fn, size_t n_inputs, std::vector<Tensor> params)
      : Node(name), fn_(std::move(fn)), n_inputs_(n_inputs), params_(std::move(params)) {}

  // Output 0 is the piece's; outputs 1.. are exposed tensors, which a loss may or may not use.
  bool takes_missing_gradients() const override { return output_meta.size() > 1; }

  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
    // The rerun: detached inputs (leaves of a graph of its own), grad mode on.
    std::vector<Tensor> inputs, wrt;
    std::vector<size_t> slot_of;  // index into this node's inputs of each wrt entry
    for (size_t i = 0; i < n_inputs_; ++i) {
      Tensor t = saved(i);
      if (t.defined() && next_edges[i].node) {
        t = t.detach();
        t.set_requires_grad(true);
        wrt.push_back(t);
        slot_of.push_back(i);
      }
      inputs.push_back(t);
    }
    for (size_t j = 0; j < params_.size(); ++j)
      if (next_edges[n_inputs_ + j].node) {
        wrt.push_back(params_[j]);
        slot_of.push_back(n_inputs_ + j);
      }
    std::vector<Tensor> out(next_edges.size());
    if (wrt.empty()) return out;
    Tensor y;
    std::vector<Tensor> exposed;
    {
      GradModeGuard on(true);
      SavedTensorHooksGuard plain(plain_hooks());
      ExposeFrameGuard frame(/*rerun=*/true);
      y = fn_(inputs);
      exposed = std::move(frame.frame().tensors);
    }
    STRAND_CHECK(y.defined() && y.shape() == output_meta[0].shape, AutogradError, "backward of '", name(),
                 "': the rerun returned ", y.defined() ? describe(y) : "undefined", ", the forward ",
                 shape_str(output_meta[0].shape));
    STRAND_CHECK(exposed.size() + 1 == output_meta.size(), AutogradError, "backward of '", name(), "': the rerun exposed ",
                 exposed.size(), " tensors, the forward ", output_meta.size() - 1);
    if (!y.requires_grad()) return out;  // nothing in the piece depends on what needs a gradient
    // The roots: the output, with its gradient (zeros where none arrived, as for any node), and
    // each exposed tensor a gradient reached.
    std::vector<Tensor> roots{y}, seeds{grads[0].defined() ? grads[0]
                                                           : Tensor::zeros(output_meta[0].shape, output_meta[0].dtype,
                                                                           output_meta[0].device)};
    for (size_t i = 0; i < exposed.size(); ++i)
      if (grads[i + 1].defined() && exposed[i].requires_grad()) {
        roots.push_back(exposed[i]);
        seeds.push_back(grads[i + 1]);
      }
    // grad() captures the gradients at the inputs' and parameters' accumulators without running
    // them; the parameters' own accumulators then run once, in this (outer) pass.
    std::vector<Tensor> g = grad(roots, seeds, wrt, /*retain_graph=*/false);
    for (size_t k = 0; k < wrt.size(); ++k) out[slot_of[k]] = g[k];
    return out;
  }

 private:
  CheckpointFn fn_;
  size_t n_inputs_;
  std::vector<Tensor> params_;
};

// A recipe and what it made last. Several recipes may build on one tensor (GELU's output and
// GELU's saved input are both remade from c_fc's output), so the result is kept from the first
// call in the backward until every saved view of it has been unpacked (`pending` counts the
// views packed and not yet unpacked); then it is dropped, and a later call (a second backward
// over a retained graph) makes it again.
struct Memo {
  std::function<Tensor()> make;
  Tensor made;
  int64_t pending = 0;
  Tensor get() {
    if (made.defined()) return made;
    Tensor t;
    {
      GradModeGuard off(false);
      t = make();
    }
    if (pending > 0) made = t;
    return t;
  }
};

// A tensor marked recomputable in the current scope: its storage and how to make it again.
struct Recipe {
  std::weak_ptr<Storage> storage;
  int64_t offset = 0;
  Shape shape;
  std::shared_ptr<Memo> memo;
};

// What a pack stored: a recipe and the view of its result that was saved, a value packed by the
// outer hooks, or a plain tensor.
struct RecipeView {
  std::shared_ptr<Memo> memo;
  Shape shape, strides;
  int64_t offset = 0;  // relative to the recomputed tensor's
};
struct OuterPacked {
  std::any packed;
  std::function<Tensor(const std::any&)> unpack;
};

// The open scopes, innermost last: their recipes, and whether they recompute matmul outputs.
struct Scope {
  std::vector<Recipe> recipes;
  bool matmuls = true;
};
thread_local std::vector<Scope> g_scopes;

SavedTensorHooks recompute_hooks(const SavedTensorHooks* outer) {
  SavedTensorHooks outer_copy = outer ? *outer : SavedTensorHooks{};
  SavedTensorHooks h;
  h.pack = [outer_copy](const Tensor& t) -> std::any {
    if (!g_scopes.empty())
      for (const Recipe& r : g_scopes.back().recipes)
        if (r.storage.lock() == t.storage()) {
          ++r.memo->pending;
          return RecipeView{r.memo, t.shape(), t.strides(), t.offset() - r.offset};
        }
    if (outer_copy.pack) return OuterPacked{outer_copy.pack(t), outer_copy.unpack};
    return t;
  };
  h.unpack = [](const std::any& a) -> Tensor {
    if (const auto* r = std::any_cast<RecipeView>(&a)) {
      const Tensor base = r->memo->get();
      if (--r->memo->pending <= 0) r->memo->made = Tensor();
      return base.as_strided(r->shape, r->strides, base.offset() + r->offset);
    }
    if (const auto* o = std::any_cast<OuterPacked>(&a)) return o->unpack(o->packed);
    return std::any_cast<Tensor>(a);
  };
  return h;
}

}  // namespace

Tensor checkpoint(const CheckpointFn& fn, const std::vector<Tensor>& inputs, const std::vector<Tensor>& params,
                  const char* name) {
  std::vector<const Tensor*> all;
  for (const Tensor& t : inputs) all.push_back(&t);
  for (const Tensor& p : params) all.push_back(&p);
  bool any = false;
  for (const Tensor* t : all) any = any || (t->defined() && t->requires_grad());
  if (!grad_enabled() || !any) {
    NoGradGuard off;  // nothing records: exposed tensors go straight to their receivers
    return fn(inputs);
  }
  Tensor y;
  ExposeFrame exposed;
  {
    ExposeFrameGuard frame(/*rerun=*/false);
    NoGradGuard off;
    y = fn(inputs);
    exposed = std::move(frame.frame());
  }
  auto node = std::make_shared<CheckpointBackward>(name, fn, inputs.size(), params);
  connect_inputs(*node, all);
  for (const Tensor& t : inputs) node->save(t);
  // Exposed tensors become outputs 1.. of the node (detached handles: fn's own stay as they are).
  std::vector<Tensor> extra;
  for (const Tensor& t : exposed.tensors) extra.push_back(t.detach());
  std::vector<Tensor*> outputs{&y};
  for (Tensor& t : extra) outputs.push_back(&t);
  set_history(node, outputs);
  for (size_t i = 0; i < extra.size(); ++i) exposed.receivers[i](extra[i]);
  return y;
}

void expose(const Tensor& t, const std::function<void(const Tensor&)>& receive) {
  if (g_expose_frames.empty()) {
    receive(t);
    return;
  }
  ExposeFrame& frame = *g_expose_frames.back();
  frame.tensors.push_back(t);
  if (!frame.rerun) frame.receivers.push_back(receive);
}

RecomputeScope::RecomputeScope(bool matmuls) {
  // The guard's hooks are built before it is pushed, so they see the hooks outside.
  g_scopes.push_back({{}, matmuls});
  guard_ = std::make_unique<SavedTensorHooksGuard>(recompute_hooks(active_saved_tensor_hooks()));
}

RecomputeScope::~RecomputeScope() {
  guard_.reset();
  g_scopes.pop_back();
}

Tensor recomputable(const Tensor& y, std::function<Tensor()> recipe, bool matmul) {
  // Outside a scope, with nothing recording, for a matmul output in a scope that keeps those, or
  // for a tensor the recipe could not rebuild as it is laid out, y is simply kept.
  if (g_scopes.empty() || !grad_enabled() || !y.is_contiguous() || (matmul && !g_scopes.back().matmuls)) return y;
  auto memo = std::make_shared<Memo>();
  memo->make = std::move(recipe);
  g_scopes.back().recipes.push_back({y.storage(), y.offset(), y.shape(), std::move(memo)});
  return y;
}

std::function<Tensor()> recipe_of(const Tensor& x) {
  if (!g_scopes.empty() && grad_enabled() && x.is_contiguous())
    for (const Recipe& r : g_scopes.back().recipes)
      if (r.offset == x.offset() && r.shape == x.shape() && r.storage.lock() == x.storage())
        return [memo = r.memo] { return memo->get(); };
  return [xd = x.detach()] { return xd; };
}

}  // namespace strand::autograd
