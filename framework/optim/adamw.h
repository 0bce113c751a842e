// AdamW (decoupled weight decay, as PyTorch's torch.optim.AdamW) over named parameters, with
// moments the checkpoint code can read and restore.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "framework/core/tensor.h"

namespace strand::optim {

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;  // applied only to parameters whose `decay` flag is set
};

// One optimised tensor. The caller chooses which take weight decay (GPT-2 practice: matrices
// do, biases and norm weights do not); see decay_by_rank.
struct AdamWParam {
  std::string name;
  Tensor param;
  bool decay = true;
};

// Moments and step count, for checkpoints. m[i] and v[i] belong to the parameter named
// names[i]. Moments are float32 for float32/bfloat16/float16 parameters, float64 for float64.
struct AdamWState {
  int64_t step = 0;  // completed steps
  std::vector<std::string> names;
  std::vector<Tensor> m;
  std::vector<Tensor> v;
};

// Marks parameters of two or more dimensions for decay, the rest (biases, norm weights) not.
std::vector<AdamWParam> decay_by_rank(const std::vector<std::pair<std::string, Tensor>>& named);

class AdamW {
 public:
  // Throws ValueError for a negative lr, eps or weight_decay, betas outside [0, 1), a repeated
  // name, or a parameter that is not a contiguous float leaf.
  AdamW(std::vector<AdamWParam> params, AdamWOptions options = {});

  // Updates every parameter that has a gradient, in place (bumping its version), and counts
  // the step. Parameters without a gradient are skipped (their moments stay as they are).
  void step();
  // Drops every parameter's gradient.
  void zero_grad();

  double lr() const { return options_.lr; }
  void set_lr(double lr);  // the schedule sets it before each step
  const AdamWOptions& options() const { return options_; }
  int64_t step_count() const { return step_; }
  const std::vector<AdamWParam>& params() const { return params_; }

  // The moments themselves (sharing storage with the optimizer) and the step count.
  AdamWState state() const;
  // Copies moments into the optimizer. Names must match the parameters one to one (any order);
  // shapes must match; dtypes are converted. ValueError / ShapeError name the parameter.
  void load_state(const AdamWState& state);

 private:
  std::vector<AdamWParam> params_;
  std::vector<Tensor> m_, v_;
  AdamWOptions options_;
  int64_t step_ = 0;
};

}  // namespace strand::optim
