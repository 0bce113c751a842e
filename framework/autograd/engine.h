// Reverse-mode engine: topological order, gradient accumulation, checks at every edge.
#pragma once
#include <vector>

#include "framework/core/tensor.h"

namespace strand::autograd {

// Back-propagates grads (one per root; undefined means ones for a one-element root) from
// roots into the .grad of every leaf that requires grad. Without retain_graph, the saved
// tensors of the graph are freed and a second backward through it is an AutogradError.
void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads, bool retain_graph = false);

// Gradients of roots with respect to inputs, returned instead of accumulated (leaves untouched).
std::vector<Tensor> grad(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                         const std::vector<Tensor>& inputs, bool retain_graph = false);

}  // namespace strand::autograd
