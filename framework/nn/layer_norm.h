// LayerNorm and RMSNorm over the last axis, with a learned scale ("weight", ones) and for
// LayerNorm an optional shift ("bias", zeros).
#pragma once
#include <cstdint>

#include "framework/nn/module.h"

namespace strand::nn {

class LayerNorm : public Module {
 public:
  explicit LayerNorm(int64_t features, double eps = 1e-5, bool bias = true, DType dtype = DType::F32);
  // x [..., features] -> same shape.
  Tensor forward(const Tensor& x) const;

  int64_t features() const { return features_; }
  double eps() const { return eps_; }
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }  // undefined without bias

 private:
  int64_t features_;
  double eps_;
  Tensor weight_, bias_;
};

class RMSNorm : public Module {
 public:
  explicit RMSNorm(int64_t features, double eps = 1e-6, DType dtype = DType::F32);
  Tensor forward(const Tensor& x) const;

  int64_t features() const { return features_; }
  double eps() const { return eps_; }
  const Tensor& weight() const { return weight_; }

 private:
  int64_t features_;
  double eps_;
  Tensor weight_;
};

}  // namespace strand::nn
