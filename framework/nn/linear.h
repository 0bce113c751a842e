// Linear layer y = x @ W + b with W stored [in, out] (the GPT-2 Conv1D layout the checkpoint
// format fixes: c_attn.weight is [C, 3C]).
#pragma once
#include <cstdint>

#include "framework/nn/module.h"

namespace strand::nn {

struct LinearOptions {
  bool bias = true;
  uint64_t seed = 0;        // weight ~ normal(0, init_std) drawn from this seed
  double init_std = 0.02;   // GPT-2 uses 0.02, and 0.02 / sqrt(2 n_layer) for residual projections
  DType dtype = DType::F32;
};

class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true, uint64_t seed = 0,
         DType dtype = DType::F32);
  Linear(int64_t in_features, int64_t out_features, const LinearOptions& options);

  // x [..., in_features] -> [..., out_features] (a 1-D x gives a 1-D result).
  Tensor forward(const Tensor& x) const;

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }
  const Tensor& weight() const { return weight_; }  // [in_features, out_features]
  const Tensor& bias() const { return bias_; }      // [out_features], undefined without bias

 private:
  int64_t in_features_, out_features_;
  Tensor weight_, bias_;
};

}  // namespace strand::nn
