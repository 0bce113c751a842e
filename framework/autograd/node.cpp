// Node bookkeeping: saved tensors, wiring inputs and outputs, leaf accumulation.
#include "framework/autograd/node.h"

#include "framework/backend/elementwise.h"
#include "framework/core/error.h"

namespace strand::autograd {

size_t Node::save(const Tensor& t) {
  saved_.emplace_back(t);
  return saved_.size() - 1;
}

Tensor Node::saved(size_t i) const {
  STRAND_CHECK(!released_, AutogradError, "backward of '", name_,
               "': the graph was already freed by an earlier backward (pass retain_graph=true to "
               "backward twice)");
  return saved_.at(i).unpack(name_.c_str());
}

void Node::release() {
  saved_.clear();
  released_ = true;
}

namespace {

// True when g is the only handle on its storage and covers all of it contiguously, in dtype.
bool owned_whole(const Tensor& g, DType dtype) {
  return g.impl().use_count() == 1 && g.storage().use_count() == 1 && g.dtype() == dtype && g.offset() == 0 &&
         g.is_contiguous() && g.nbytes() == g.storage()->nbytes();
}

// A new tensor over g's storage with no autograd history.
std::shared_ptr<TensorImpl> fresh_handle(const Tensor& g) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = g.storage();
  impl->shape = g.shape();
  impl->strides = g.strides();
  impl->dtype = g.dtype();
  return impl;
}

void run_hooks(TensorImpl& leaf) {
  for (const auto& [id, hook] : leaf.autograd.post_accumulate_hooks) hook();
}

}  // namespace

AccumulateGrad::AccumulateGrad(const std::shared_ptr<TensorImpl>& leaf)
    : Node("accumulate_grad"), leaf_(leaf) {}

std::vector<Tensor> AccumulateGrad::apply(std::vector<Tensor>&& grads) {
  auto leaf = leaf_.lock();
  if (!leaf) return {};
  Tensor g = std::move(grads.at(0));
  if (!leaf->autograd.grad) {
    // The leaf's gradient must be a private contiguous buffer, as later passes add into it in
    // place. The incoming buffer is taken as it is when nothing else can see it (this is the
    // only handle on its tensor and its storage, which it fills exactly); otherwise it may
    // alias other tensors and is copied.
    leaf->autograd.grad = owned_whole(g, leaf->dtype) ? fresh_handle(g) : g.copy_as(leaf->dtype, g.device()).impl();
    run_hooks(*leaf);
    return {};
  }
  Tensor acc(leaf->autograd.grad);
  STRAND_CHECK(acc.dtype() == DType::F32 || acc.dtype() == DType::F64, DTypeError, "accumulate_grad: ",
               dtype_name(acc.dtype()), " leaves do not accumulate");
  Tensor add = g.is_contiguous() && g.dtype() == acc.dtype() ? g : g.copy_as(acc.dtype(), acc.device());
  // acc += add through the axpy kernel with alpha = 1 (1 * b is exact, so the sum is a + b).
  backend::AxpyParams p;
  p.device = acc.device();
  p.dtype = acc.dtype();
  p.n = acc.numel();
  p.alpha = 1.0;
  p.dst = acc.raw_data();
  p.src = add.raw_data();
  backend::axpy(p);
  acc.bump_version();
  run_hooks(*leaf);
  return {};
}

int add_post_accumulate_hook(const Tensor& leaf, std::function<void()> hook) {
  STRAND_CHECK(leaf.defined() && leaf.requires_grad() && !leaf.impl()->autograd.grad_fn, AutogradError,
               "add_post_accumulate_hook: the tensor is not a leaf that requires grad");
  auto& hooks = leaf.impl()->autograd.post_accumulate_hooks;
  const int id = hooks.empty() ? 0 : hooks.back().first + 1;
  hooks.emplace_back(id, std::move(hook));
  return id;
}

void remove_post_accumulate_hook(const Tensor& leaf, int id) {
  auto& hooks = leaf.impl()->autograd.post_accumulate_hooks;
  std::erase_if(hooks, [id](const auto& h) { return h.first == id; });
}

bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  if (!grad_enabled()) return false;
  for (const Tensor* t : inputs)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}

Edge gradient_edge(const Tensor& t) {
  auto& meta = t.impl()->autograd;
  if (meta.grad_fn) return {meta.grad_fn, meta.output_nr};
  if (!meta.requires_grad) return {};
  auto acc = meta.grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(t.impl());
    acc->output_meta.push_back({t.shape(), t.dtype(), t.device()});
    meta.grad_accumulator = acc;
  }
  return {acc, 0};
}

void connect_inputs(Node& node, const std::vector<const Tensor*>& inputs) {
  node.next_edges.reserve(inputs.size());
  node.input_meta.reserve(inputs.size());
  for (const Tensor* t : inputs) {
    if (!t->defined()) {
      node.next_edges.push_back({});
      node.input_meta.push_back({});
      continue;
    }
    node.next_edges.push_back(gradient_edge(*t));
    node.input_meta.push_back({t->shape(), t->dtype(), t->device()});
  }
}

void set_history(const std::shared_ptr<Node>& node, const std::vector<Tensor*>& outputs) {
  node->output_meta.clear();
  uint32_t nr = 0;
  for (Tensor* out : outputs) {
    auto& meta = out->impl()->autograd;
    meta.grad_fn = node;
    meta.output_nr = nr++;
    meta.requires_grad = true;
    node->output_meta.push_back({out->shape(), out->dtype(), out->device()});
  }
}

void set_history(const std::shared_ptr<Node>& node, std::initializer_list<Tensor*> outputs) {
  set_history(node, std::vector<Tensor*>(outputs));
}

}  // namespace strand::autograd
