// Graph node: the backward of one op application. An op records a Node subclass whose apply()
// maps the gradients of its outputs to the gradients of its inputs (see docs/architecture.md).
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "framework/autograd/grad_mode.h"
#include "framework/autograd/saved_tensor.h"
#include "framework/core/tensor.h"

namespace strand::autograd {

class Node;

struct Edge {
  std::shared_ptr<Node> node;  // null: this input needs no gradient
  uint32_t input_nr = 0;       // which output slot of `node` the gradient feeds
};

// What a gradient flowing along an edge must look like.
struct TensorMeta {
  Shape shape;
  DType dtype = DType::F32;
  Device device;
};

class Node {
 public:
  explicit Node(std::string name) : name_(std::move(name)) {}
  virtual ~Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // grads has one defined tensor per output (zeros where no gradient arrived; undefined there
  // instead when takes_missing_gradients()). Returns one gradient per input; an undefined tensor
  // means none. Runs with grad mode off.
  virtual std::vector<Tensor> apply(std::vector<Tensor>&& grads) = 0;
  // True for a node that must tell "no gradient arrived" from a zero gradient: a checkpoint with
  // extra outputs, whose rerun would otherwise add +0 to a gradient that is -0 without it.
  virtual bool takes_missing_gradients() const { return false; }

  const std::string& name() const { return name_; }

  // Saves a tensor for backward; returns its index for saved().
  size_t save(const Tensor& t);
  Tensor saved(size_t i) const;
  // Frees saved tensors after a backward without retain_graph; a later backward is an error.
  void release();
  bool released() const { return released_; }

  std::vector<Edge> next_edges;         // one per input
  std::vector<TensorMeta> input_meta;   // one per input
  std::vector<TensorMeta> output_meta;  // one per output

 private:
  std::string name_;
  std::vector<SavedTensor> saved_;
  bool released_ = false;
};

// Gradient sink of a leaf that requires grad: adds incoming gradients into leaf.grad().
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(const std::shared_ptr<TensorImpl>& leaf);
  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override;

 private:
  std::weak_ptr<TensorImpl> leaf_;
};

// Hooks on a leaf that requires grad, called (in the order added) each time a backward pass has
// finished adding into its grad: the point where, within that pass, the gradient is final (the
// engine runs a leaf's accumulator once per pass, after every path into it). Gradient
// synchronisation uses it to start a bucket's all-reduce while the rest of the backward runs.
// Returns an id for remove_post_accumulate_hook.
int add_post_accumulate_hook(const Tensor& leaf, std::function<void()> hook);
void remove_post_accumulate_hook(const Tensor& leaf, int id);

// True when recording is on and some input requires grad.
bool needs_grad(std::initializer_list<const Tensor*> inputs);

// Creates node NodeT(name, args...) wired to the inputs, or returns null when no gradient is needed.
void connect_inputs(Node& node, const std::vector<const Tensor*>& inputs);
template <class NodeT, class... Args>
std::shared_ptr<NodeT> make_node(std::initializer_list<const Tensor*> inputs, Args&&... args) {
  if (!needs_grad(inputs)) return nullptr;
  auto node = std::make_shared<NodeT>(std::forward<Args>(args)...);
  connect_inputs(*node, std::vector<const Tensor*>(inputs));
  return node;
}
// Same for ops with a runtime number of inputs (concat, stack).
template <class NodeT, class... Args>
std::shared_ptr<NodeT> make_node_n(const std::vector<const Tensor*>& inputs, Args&&... args) {
  bool any = false;
  for (const Tensor* t : inputs) any = any || (t->defined() && t->requires_grad());
  if (!grad_enabled() || !any) return nullptr;
  auto node = std::make_shared<NodeT>(std::forward<Args>(args)...);
  connect_inputs(*node, inputs);
  return node;
}

// Makes `outputs` the outputs of node (output i gets output_nr i).
void set_history(const std::shared_ptr<Node>& node, std::initializer_list<Tensor*> outputs);
void set_history(const std::shared_ptr<Node>& node, const std::vector<Tensor*>& outputs);

// The edge a gradient for t flows along: its grad_fn, or its leaf accumulator.
Edge gradient_edge(const Tensor& t);

}  // namespace strand::autograd
