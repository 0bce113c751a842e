// The feed-forward block: expand, activate (GELU, or SiLU-gated for SwiGLU), project back.
#include "framework/nn/mlp.h"

#include "framework/autograd/checkpoint.h"
#include "framework/core/error.h"
#include "framework/nn/autocast.h"
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
  // Selective checkpointing (autograd::recomputable and recipe_of: no-ops outside a
  // RecomputeScope) keeps none of the MLP's [..., F] tensors: c_fc's output is remade in the
  // backward by rerunning the c_fc GEMM on the input's recipe (under the forward's autocast, so
  // the same bits), and the activation's outputs from that. Megatron keeps c_fc's output; it is
  // 4 C floats a token, the largest thing a selective block would keep (docs/memory.md).
  const DType compute = autocast_dtype();
  const std::function<Tensor()> input = autograd::recipe_of(x);
  Tensor h = autograd::recomputable(c_fc_->forward(x), [fc = c_fc_, input, compute] {
    const AutocastGuard autocast(compute);
    return fc->forward(input());
  }, /*matmul=*/true);
  const std::function<Tensor()> pre = autograd::recipe_of(h);
  if (swiglu_) {
    const int64_t f = d_ff_;
    std::vector<Tensor> gate_up = ops::split(h, {f, f}, -1);
    const Tensor act = autograd::recomputable(ops::silu(gate_up[0]), [pre, f] {
      return ops::silu(ops::split(pre(), {f, f}, -1)[0]);
    });
    h = autograd::recomputable(ops::mul(act, gate_up[1]), [pre, f] {
      const std::vector<Tensor> gu = ops::split(pre(), {f, f}, -1);
      return ops::mul(ops::silu(gu[0]), gu[1]);
    });
  } else {
    h = autograd::recomputable(ops::gelu(h), [pre] { return ops::gelu(pre()); });
  }
  return c_proj_->forward(h);
}

}  // namespace strand::nn
