// The reverse pass: collect the graph, count dependencies, run nodes when all their output
// gradients have arrived, check every returned gradient against the input it belongs to.
#include "framework/autograd/engine.h"

#include <map>
#include <unordered_map>

#include "framework/autograd/node.h"
#include "framework/backend/elementwise.h"
#include "framework/core/error.h"

namespace strand::autograd {
namespace {

// a + b for two gradients of the same shape, dtype and device (a fresh contiguous buffer),
// through the elementwise kernel, which reads both through their strides.
// bfloat16 and float16 gradients (of the compute-dtype tensors of mixed precision) are summed
// in float32 and rounded once, as their arithmetic is float32 everywhere (core/dtype.h).
Tensor sum_gradients(const Tensor& a, const Tensor& b) {
  if (a.dtype() == DType::BF16 || a.dtype() == DType::F16) {
    STRAND_CHECK(b.dtype() == a.dtype(), DTypeError, "backward: cannot sum a ", dtype_name(a.dtype()), " and a ",
                 dtype_name(b.dtype()), " gradient");
    return sum_gradients(a.copy_as(DType::F32, a.device()), b.copy_as(DType::F32, b.device()))
        .copy_as(a.dtype(), a.device());
  }
  STRAND_CHECK(a.dtype() == DType::F32 || a.dtype() == DType::F64, DTypeError, "backward: cannot sum ",
               dtype_name(a.dtype()), " gradients");
  Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());
  backend::BinaryParams p;
  p.device = a.device();
  p.dtype = a.dtype();
  p.op = backend::Binary::Add;
  p.shape = a.shape();
  p.out = out.raw_data();
  p.a = a.raw_data();
  p.a_strides = a.strides();
  p.b = b.raw_data();
  p.b_strides = b.strides();
  backend::elementwise_binary(p);
  return out;
}

// slot += g in place when slot is float32/float64, contiguous and the only handle on all of its
// storage (nothing else can see the change); otherwise a fresh sum. Both give the bits of
// sum_gradients(slot, g): the same additions in the same order.
void accumulate_gradient(Tensor& slot, const Tensor& g) {
  const bool owned = slot.impl().use_count() == 1 && slot.storage().use_count() == 1 && slot.offset() == 0 &&
                     slot.is_contiguous() && slot.nbytes() == slot.storage()->nbytes() &&
                     (slot.dtype() == DType::F32 || slot.dtype() == DType::F64) && g.dtype() == slot.dtype() &&
                     g.shape() == slot.shape() && g.device() == slot.device() && g.storage() != slot.storage();
  if (!owned) {
    slot = sum_gradients(slot, g);
    return;
  }
  backend::BinaryParams p;
  p.device = slot.device();
  p.dtype = slot.dtype();
  p.op = backend::Binary::Add;
  p.shape = slot.shape();
  p.out = slot.raw_data();
  p.a = slot.raw_data();
  p.a_strides = slot.strides();
  p.b = g.raw_data();
  p.b_strides = g.strides();
  backend::elementwise_binary(p);
  slot.bump_version();
}

void check_gradient(const Node& node, size_t i, const Tensor& g) {
  const TensorMeta& m = node.input_meta[i];
  STRAND_CHECK(g.shape() == m.shape, AutogradError, "backward of '", node.name(), "': gradient for input ", i,
               " has shape ", shape_str(g.shape()), ", the input has shape ", shape_str(m.shape));
  STRAND_CHECK(g.dtype() == m.dtype, AutogradError, "backward of '", node.name(), "': gradient for input ", i,
               " is ", dtype_name(g.dtype()), ", the input is ", dtype_name(m.dtype));
  STRAND_CHECK(g.device() == m.device, AutogradError, "backward of '", node.name(), "': gradient for input ",
               i, " is on ", g.device().str(), ", the input is on ", m.device.str());
}

struct Capture {
  Node* node;
  uint32_t slot;
};

// Runs the pass. When captures is non-empty, gradients reaching those (node, slot) pairs are
// returned and leaf accumulators do not run.
std::vector<Tensor> run(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads, bool retain_graph,
                        const std::vector<Capture>& captures) {
  STRAND_CHECK(roots.size() == grads.size(), AutogradError, "backward: ", roots.size(), " roots but ",
               grads.size(), " gradients");
  std::unordered_map<Node*, std::vector<Tensor>> buffers;
  std::vector<std::shared_ptr<Node>> root_nodes;
  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& r = roots[i];
    STRAND_CHECK(r.requires_grad(), AutogradError,
                 "backward: the tensor does not require grad and has no grad_fn");
    Tensor g = grads[i];
    if (!g.defined()) {
      STRAND_CHECK(r.numel() == 1, AutogradError, "backward: a gradient must be given for a non-scalar root ",
                   describe(r));
      g = Tensor::ones(r.shape(), r.dtype(), r.device());
    }
    STRAND_CHECK(g.shape() == r.shape() && g.dtype() == r.dtype(), AutogradError, "backward: root gradient ",
                 describe(g), " does not match root ", describe(r));
    Edge e = gradient_edge(r);
    auto& buf = buffers[e.node.get()];
    buf.resize(e.node->output_meta.size());
    buf[e.input_nr] = buf[e.input_nr].defined() ? sum_gradients(buf[e.input_nr], g) : g;
    root_nodes.push_back(e.node);
  }

  // Dependency counts: how many edges inside the graph point at each node.
  std::unordered_map<Node*, int> deps;
  std::unordered_map<Node*, std::shared_ptr<Node>> keep;  // holds nodes alive during the pass
  std::vector<Node*> stack;
  for (auto& n : root_nodes)
    if (keep.emplace(n.get(), n).second) stack.push_back(n.get());
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    STRAND_CHECK(!n->released(), AutogradError, "backward of '", n->name(),
                 "': the graph was already freed by an earlier backward (pass retain_graph=true to backward twice)");
    for (auto& e : n->next_edges) {
      if (!e.node) continue;
      ++deps[e.node.get()];
      if (keep.emplace(e.node.get(), e.node).second) stack.push_back(e.node.get());
    }
  }

  std::map<std::pair<Node*, uint32_t>, size_t> capture_index;
  for (size_t i = 0; i < captures.size(); ++i) capture_index[{captures[i].node, captures[i].slot}] = i;
  std::vector<Tensor> captured(captures.size());

  NoGradGuard no_grad;
  std::vector<Node*> ready;
  for (auto& n : root_nodes)
    if (deps[n.get()] == 0 && std::find(ready.begin(), ready.end(), n.get()) == ready.end()) ready.push_back(n.get());
  while (!ready.empty()) {
    Node* n = ready.back();
    ready.pop_back();
    std::vector<Tensor> in = std::move(buffers[n]);
    buffers.erase(n);
    in.resize(n->output_meta.size());
    for (uint32_t s = 0; s < in.size(); ++s) {
      if (!in[s].defined() && !n->takes_missing_gradients()) {
        const TensorMeta& m = n->output_meta[s];
        in[s] = Tensor::zeros(m.shape, m.dtype, m.device);
      }
      auto it = capture_index.find({n, s});
      if (it != capture_index.end()) captured[it->second] = in[s];
    }
    const bool is_leaf_sink = dynamic_cast<AccumulateGrad*>(n) != nullptr;
    std::vector<Tensor> out;
    if (!(is_leaf_sink && !captures.empty())) out = n->apply(std::move(in));
    STRAND_CHECK(out.empty() || out.size() == n->next_edges.size(), AutogradError, "backward of '", n->name(),
                 "' returned ", out.size(), " gradients for ", n->next_edges.size(), " inputs");
    for (size_t i = 0; i < n->next_edges.size(); ++i) {
      const Edge& e = n->next_edges[i];
      if (!e.node) continue;
      if (i < out.size() && out[i].defined()) {
        check_gradient(*n, i, out[i]);
        auto& buf = buffers[e.node.get()];
        buf.resize(e.node->output_meta.size());
        Tensor& slot = buf[e.input_nr];
        if (slot.defined()) accumulate_gradient(slot, out[i]);
        else slot = out[i];
      }
      if (--deps[e.node.get()] == 0) ready.push_back(e.node.get());
    }
    if (!retain_graph && !is_leaf_sink) n->release();
  }
  return captured;
}

}  // namespace

void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads, bool retain_graph) {
  run(roots, grads, retain_graph, {});
}

std::vector<Tensor> grad(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                         const std::vector<Tensor>& inputs, bool retain_graph) {
  std::vector<Capture> captures;
  for (const Tensor& t : inputs) {
    Edge e = gradient_edge(t);
    STRAND_CHECK(e.node != nullptr, AutogradError, "grad: an input ", describe(t), " does not require grad");
    captures.push_back({e.node.get(), e.input_nr});
  }
  std::vector<Tensor> g = run(roots, grads, retain_graph, captures);
  for (size_t i = 0; i < g.size(); ++i)
    if (!g[i].defined()) g[i] = Tensor::zeros(inputs[i].shape(), inputs[i].dtype(), inputs[i].device());
  return g;
}

}  // namespace strand::autograd

namespace strand {

// Declared in tensor.h, defined here so that the tensor core does not depend on autograd.
void Tensor::backward(const Tensor& grad, bool retain_graph) const {
  autograd::backward({*this}, {grad}, retain_graph);
}

}  // namespace strand
