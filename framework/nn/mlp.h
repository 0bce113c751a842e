// The transformer feed-forward block: GELU (GPT-2) or SwiGLU (LLaMA-style gated SiLU).
#pragma once
#include <cstdint>
#include <memory>

#include "framework/nn/linear.h"
#include "framework/nn/module.h"

namespace strand::nn {

struct MlpOptions {
  bool swiglu = false;           // false: GELU (tanh approximation, as GPT-2)
  bool bias = true;
  uint64_t seed = 0;             // weight init: parameter j of the module draws from seed + j
  double init_std = 0.02;        // c_fc weights
  double proj_init_std = 0.02;   // c_proj weights (GPT-2: 0.02 / sqrt(2 n_layer))
  DType dtype = DType::F32;
};

// Parameters (x @ W + b layout, GPT-2 names), with C = d_model and F = d_ff:
//   GELU:   c_fc.weight [C, F], c_fc.bias [F];  y = c_proj(gelu(c_fc(x)))
//   SwiGLU: c_fc.weight [C, 2F], c_fc.bias [2F], columns [0, F) the gate and [F, 2F) the up
//           projection;  y = c_proj(silu(gate) * up)
//   both:   c_proj.weight [F, C], c_proj.bias [C].
class Mlp : public Module {
 public:
  Mlp(int64_t d_model, int64_t d_ff, const MlpOptions& options = {});
  // x [..., C] -> [..., C].
  Tensor forward(const Tensor& x) const;

  int64_t d_model() const { return d_model_; }
  int64_t d_ff() const { return d_ff_; }
  bool swiglu() const { return swiglu_; }

 private:
  int64_t d_model_, d_ff_;
  bool swiglu_;
  std::shared_ptr<Linear> c_fc_, c_proj_;
};

}  // namespace strand::nn
