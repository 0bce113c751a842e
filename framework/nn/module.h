// Module: a node in a tree of named parameters, buffers and submodules. The dotted names
// ("transformer.h.0.ln_1.weight") are the checkpoint dataset names (architecture.md §6).
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "framework/core/tensor.h"

namespace strand::nn {

class Module {
 public:
  virtual ~Module() = default;

  // Every parameter below this module, depth first in registration order, with dotted names.
  std::vector<std::pair<std::string, Tensor>> named_parameters(const std::string& prefix = "") const;
  std::vector<std::pair<std::string, Tensor>> named_buffers(const std::string& prefix = "") const;
  std::vector<Tensor> parameters() const;
  int64_t parameter_count() const;
  // The parameter with this dotted name; ValueError naming it when there is none.
  Tensor parameter(const std::string& name) const;
  // Copies values into the parameters of the same dotted names (in place, converting dtypes;
  // shapes must match, else ShapeError). With strict, a name the module lacks or a parameter
  // left without a value is a ValueError; nothing is copied unless every check passes.
  void load_parameters(const std::vector<std::pair<std::string, Tensor>>& values, bool strict = true);
  void zero_grad();
  // Calls fn on this module and every submodule, depth first in registration order.
  void visit(const std::function<void(Module&)>& fn);
  // Training mode (dropout on) or evaluation mode, for this module and every submodule.
  void train(bool on = true);
  bool is_training() const { return training_; }

 protected:
  // Registers a leaf that requires grad; returns it.
  Tensor& register_parameter(const std::string& name, Tensor t);
  Tensor& register_buffer(const std::string& name, Tensor t);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    children_.emplace_back(name, m);
    return m;
  }

 private:
  std::vector<std::pair<std::string, Tensor>> params_;
  std::vector<std::pair<std::string, Tensor>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

}  // namespace strand::nn
