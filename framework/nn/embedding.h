// Token (or position) embedding table: "weight" [num_embeddings, dim], normal(0, init_std).
#pragma once
#include <cstdint>

#include "framework/nn/module.h"

namespace strand::nn {

class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t dim, uint64_t seed = 0, DType dtype = DType::F32,
            double init_std = 0.02);
  // ids int32 of any shape -> [..., dim]; an id outside [0, num_embeddings) is a ValueError.
  Tensor forward(const Tensor& ids) const;

  int64_t num_embeddings() const { return num_embeddings_; }
  int64_t dim() const { return dim_; }
  const Tensor& weight() const { return weight_; }

 private:
  int64_t num_embeddings_, dim_;
  Tensor weight_;
};

}  // namespace strand::nn
