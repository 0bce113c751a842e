// Embedding module: the table parameter around ops::embedding.
#include "framework/nn/embedding.h"

#include "framework/core/error.h"
#include "framework/ops/embedding.h"

namespace strand::nn {

Embedding::Embedding(int64_t num_embeddings, int64_t dim, uint64_t seed, DType dtype, double init_std)
    : num_embeddings_(num_embeddings), dim_(dim) {
  STRAND_CHECK(num_embeddings > 0 && dim > 0, ValueError, "embedding: sizes must be positive, got ",
               num_embeddings, " x ", dim);
  STRAND_CHECK(init_std >= 0, ValueError, "embedding: init_std must be >= 0, got ", init_std);
  weight_ = register_parameter("weight", Tensor::randn({num_embeddings, dim}, seed, dtype, init_std));
}

Tensor Embedding::forward(const Tensor& ids) const { return ops::embedding(weight_, ids); }

}  // namespace strand::nn
