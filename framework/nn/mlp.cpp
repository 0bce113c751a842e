// The feed-forward block: expand, activate (GELU, or SiLU-gated for SwiGLU), project back.
#include "framework/nn/mlp.h"

#include "framework/autograd/checkpoint.h"
#include "framework/core/error.h"
#include "framework/ops/elementwise.h"
#include "framework/ops/join.h"

namespace strand::nn {

Mlp::Mlp(int64_t d_model, int64_t d_ff, const MlpOptions& options)
    : d_model_(d_model), d_ff_(d_ff), swiglu_(options.swiglu) {
  STRAND_CHECK(d_model > 0 && d_ff > 0, ValueError, "mlp: d_model and d_ff must be positive, got d_model ", d_model,
               ", d_ff ", d_ff);
  const int64_t fc_out = swiglu_ ? 2 * d_ff : d_ff;
  c_fc_ = register_module("c_fc", std::make_shared<Linear>(d_model, fc_out, LinearOptions{options.bias, options.seed,
                                                                                         options.init_std, options.dtype}));
  c_proj_ = register_module("c_proj", std::make_shared<Linear>(d_ff, d_model,
                                                               LinearOptions{options.bias, options.seed + (options.bias ? 2 : 1),
                                                                             options.proj_init_std, options.dtype}));
}

Tensor Mlp::forward(const Tensor& x) const {
  STRAND_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == d_model_, ShapeError, "mlp: input ",
               x.defined() ? describe(x) : "undefined", " does not end in d_model ", d_model_);
  Tensor h = c_fc_->forward(x);
  // The activation's outputs are marked for selective checkpointing (autograd::recomputable, a
  // no-op outside a RecomputeScope): remade from c_fc's output, which is kept anyway.
  if (swiglu_) {
    std::vector<Tensor> gate_up = ops::split(h, {d_ff_, d_ff_}, -1);
    const Tensor gate = gate_up[0].detach(), up = gate_up[1].detach();
    const Tensor act = autograd::recomputable(ops::silu(gate_up[0]), [gate] { return ops::silu(gate); });
    h = autograd::recomputable(ops::mul(act, gate_up[1]), [gate, up] { return ops::mul(ops::silu(gate), up); });
  } else {
    const Tensor pre = h.detach();
    h = autograd::recomputable(ops::gelu(h), [pre] { return ops::gelu(pre); });
  }
  return c_proj_->forward(h);
}

}  // namespace strand::nn
