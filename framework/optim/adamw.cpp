// AdamW: argument checks, moment allocation, and the per-parameter call into the fused kernel.
#include "framework/optim/adamw.h"

#include <cmath>
#include <unordered_map>

#include "framework/backend/adamw.h"
#include "framework/core/error.h"
#include "framework/ops/dispatch.h"

namespace strand::optim {
namespace {

// Moments keep float64 for float64 parameters (gradient checks, tests) and float32 otherwise.
DType moment_dtype(DType param) { return param == DType::F64 ? DType::F64 : DType::F32; }

void check_options(const AdamWOptions& o) {
  STRAND_CHECK(std::isfinite(o.lr) && o.lr >= 0, ValueError, "adamw: lr must be finite and >= 0, got ", o.lr);
  STRAND_CHECK(o.beta1 >= 0 && o.beta1 < 1, ValueError, "adamw: beta1 must be in [0, 1), got ", o.beta1);
  STRAND_CHECK(o.beta2 >= 0 && o.beta2 < 1, ValueError, "adamw: beta2 must be in [0, 1), got ", o.beta2);
  STRAND_CHECK(std::isfinite(o.eps) && o.eps >= 0, ValueError, "adamw: eps must be finite and >= 0, got ", o.eps);
  STRAND_CHECK(std::isfinite(o.weight_decay) && o.weight_decay >= 0, ValueError,
               "adamw: weight_decay must be finite and >= 0, got ", o.weight_decay);
}

}  // namespace

std::vector<AdamWParam> decay_by_rank(const std::vector<std::pair<std::string, Tensor>>& named) {
  std::vector<AdamWParam> out;
  out.reserve(named.size());
  for (const auto& [name, t] : named) out.push_back({name, t, t.dim() >= 2});
  return out;
}

AdamW::AdamW(std::vector<AdamWParam> params, AdamWOptions options)
    : params_(std::move(params)), options_(options) {
  check_options(options_);
  std::unordered_map<std::string, size_t> seen;
  for (const AdamWParam& p : params_) {
    STRAND_CHECK(p.param.defined(), ValueError, "adamw: parameter '", p.name, "' is undefined");
    STRAND_CHECK(seen.emplace(p.name, 0).second, ValueError, "adamw: parameter name '", p.name, "' given twice");
    STRAND_CHECK(is_floating(p.param.dtype()), DTypeError, "adamw: parameter '", p.name, "' is ",
                 describe(p.param), ", not a float tensor");
    STRAND_CHECK(p.param.is_leaf(), ValueError, "adamw: parameter '", p.name,
                 "' has a grad_fn; optimise leaf tensors only");
    STRAND_CHECK(p.param.is_contiguous(), ValueError, "adamw: parameter '", p.name, "' ", describe(p.param),
                 " is not contiguous; it is updated in place");
    // Moments live with the parameter; a device without the adamw_update kernel is reported by
    // the first step.
    m_.push_back(Tensor::zeros(p.param.shape(), moment_dtype(p.param.dtype()), p.param.device()));
    v_.push_back(Tensor::zeros(p.param.shape(), moment_dtype(p.param.dtype()), p.param.device()));
  }
}

void AdamW::set_lr(double lr) {
  STRAND_CHECK(std::isfinite(lr) && lr >= 0, ValueError, "adamw: lr must be finite and >= 0, got ", lr);
  options_.lr = lr;
}

void AdamW::step() {
  ++step_;
  backend::AdamWParams kp;
  kp.lr = options_.lr;
  kp.beta1 = options_.beta1;
  kp.beta2 = options_.beta2;
  kp.eps = options_.eps;
  kp.bias_correction1 = 1.0 - std::pow(options_.beta1, static_cast<double>(step_));
  kp.bias_correction2 = 1.0 - std::pow(options_.beta2, static_cast<double>(step_));
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor& p = params_[i].param;
    Tensor g = p.grad();
    if (!g.defined()) continue;
    kp.n = p.numel();
    kp.weight_decay = params_[i].decay ? options_.weight_decay : 0.0;
    const bool native = p.dtype() == DType::F32 || p.dtype() == DType::F64;
    // bfloat16/float16 parameters are updated through a float32 copy and rounded back
    // (mixed-precision training keeps float32 master weights, so this path is the exception).
    Tensor work = native ? p : p.copy_as(DType::F32, p.device());
    Tensor grad = g.dtype() == work.dtype() ? ops::contiguous_data(g) : g.copy_as(work.dtype(), p.device());
    ops::check_float_dtype("adamw", work.dtype());
    kp.device = p.device();
    kp.dtype = work.dtype();
    kp.param = work.raw_data();
    kp.grad = grad.raw_data();
    kp.m = m_[i].raw_data();
    kp.v = v_[i].raw_data();
    backend::adamw_update(kp);
    if (native) p.bump_version();
    else p.copy_from(work);  // bumps the version
    m_[i].bump_version();
    v_[i].bump_version();
  }
}

void AdamW::zero_grad() {
  for (AdamWParam& p : params_) p.param.zero_grad();
}

AdamWState AdamW::state() const {
  AdamWState s;
  s.step = step_;
  for (const AdamWParam& p : params_) s.names.push_back(p.name);
  s.m = m_;
  s.v = v_;
  return s;
}

void AdamW::load_state(const AdamWState& s) {
  STRAND_CHECK(s.step >= 0, ValueError, "adamw load_state: step must be >= 0, got ", s.step);
  STRAND_CHECK(s.names.size() == s.m.size() && s.names.size() == s.v.size(), ValueError,
               "adamw load_state: ", s.names.size(), " names, ", s.m.size(), " first moments and ", s.v.size(),
               " second moments");
  STRAND_CHECK(s.names.size() == params_.size(), ValueError, "adamw load_state: the state holds ", s.names.size(),
               " parameters, the optimizer has ", params_.size());
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i < params_.size(); ++i) index[params_[i].name] = i;
  // Check everything before copying anything, so a bad state leaves the optimizer unchanged.
  std::vector<size_t> target(s.names.size());
  std::vector<bool> filled(params_.size(), false);
  for (size_t k = 0; k < s.names.size(); ++k) {
    auto it = index.find(s.names[k]);
    STRAND_CHECK(it != index.end(), ValueError, "adamw load_state: the state has parameter '", s.names[k],
                 "', which the optimizer does not");
    STRAND_CHECK(!filled[it->second], ValueError, "adamw load_state: parameter '", s.names[k], "' appears twice");
    filled[it->second] = true;
    const Shape& want = params_[it->second].param.shape();
    STRAND_CHECK(s.m[k].defined() && s.v[k].defined() && s.m[k].shape() == want && s.v[k].shape() == want,
                 ShapeError, "adamw load_state: moments of '", s.names[k], "' are ", describe(s.m[k]), " and ",
                 describe(s.v[k]), ", the parameter is ", shape_str(want));
    target[k] = it->second;
  }
  for (size_t k = 0; k < s.names.size(); ++k) {
    m_[target[k]].copy_from(s.m[k]);
    v_[target[k]].copy_from(s.v[k]);
  }
  step_ = s.step;
}

}  // namespace strand::optim
