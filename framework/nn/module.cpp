// Module tree walks.
#include "framework/nn/module.h"

#include <unordered_map>

#include "framework/core/error.h"

namespace strand::nn {

Tensor& Module::register_parameter(const std::string& name, Tensor t) {
  for (auto& [n, _] : params_) STRAND_CHECK(n != name, ValueError, "module: parameter '", name, "' registered twice");
  t.set_requires_grad(true);
  params_.emplace_back(name, std::move(t));
  return params_.back().second;
}

Tensor& Module::register_buffer(const std::string& name, Tensor t) {
  buffers_.emplace_back(name, std::move(t));
  return buffers_.back().second;
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters(const std::string& prefix) const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& [n, t] : params_) out.emplace_back(prefix + n, t);
  for (auto& [n, m] : children_) {
    auto sub = m->named_parameters(prefix + n + ".");
    out.insert(out.end(), sub.begin(), sub.end());
  }
  return out;
}

void Module::visit(const std::function<void(Module&)>& fn) {
  fn(*this);
  for (auto& [n, m] : children_) m->visit(fn);
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers(const std::string& prefix) const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& [n, t] : buffers_) out.emplace_back(prefix + n, t);
  for (auto& [n, m] : children_) {
    auto sub = m->named_buffers(prefix + n + ".");
    out.insert(out.end(), sub.begin(), sub.end());
  }
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [_, t] : named_parameters()) out.push_back(t);
  return out;
}

int64_t Module::parameter_count() const {
  int64_t n = 0;
  for (auto& [_, t] : named_parameters()) n += t.numel();
  return n;
}

Tensor Module::parameter(const std::string& name) const {
  for (auto& [n, t] : named_parameters())
    if (n == name) return t;
  throw ValueError(detail::concat("module: no parameter named '", name, "'"));
}

void Module::load_parameters(const std::vector<std::pair<std::string, Tensor>>& values, bool strict) {
  const auto named = named_parameters();
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i < named.size(); ++i) index.emplace(named[i].first, i);
  std::vector<std::pair<size_t, size_t>> copies;  // (parameter, value)
  std::vector<bool> given(named.size(), false);
  for (size_t k = 0; k < values.size(); ++k) {
    const auto& [name, value] = values[k];
    auto it = index.find(name);
    if (it == index.end()) {
      STRAND_CHECK(!strict, ValueError, "load_parameters: the module has no parameter named '", name, "'");
      continue;
    }
    STRAND_CHECK(!given[it->second], ValueError, "load_parameters: parameter '", name, "' given twice");
    given[it->second] = true;
    const Tensor& p = named[it->second].second;
    STRAND_CHECK(value.defined() && value.shape() == p.shape(), ShapeError, "load_parameters: value for '", name,
                 "' is ", describe(value), ", the parameter is ", describe(p));
    copies.emplace_back(it->second, k);
  }
  if (strict)
    for (size_t i = 0; i < named.size(); ++i)
      STRAND_CHECK(given[i], ValueError, "load_parameters: no value for parameter '", named[i].first, "'");
  for (auto [pi, vi] : copies) {
    Tensor p = named[pi].second;
    p.copy_from(values[vi].second);
  }
}

void Module::zero_grad() {
  for (auto& [_, t] : named_parameters()) {
    Tensor p = t;
    p.zero_grad();
  }
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [_, m] : children_) m->train(on);
}

}  // namespace strand::nn
