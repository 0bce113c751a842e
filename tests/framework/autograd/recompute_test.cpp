// Recompute-on-unpack saved tensors (autograd::RecomputeScope, recomputable, recipe_of): a
// recipe built on another's keeps neither value, each recipe runs once per backward, and the
// gradients are bitwise those of the plain graph.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <optional>

#include "framework/autograd/checkpoint.h"
#include "framework/core/tensor.h"
#include "framework/ops/elementwise.h"
#include "framework/ops/reduce.h"

namespace strand {
namespace {

struct Outcome {
  std::vector<double> grad;
  int b_made = 0, c_made = 0;  // calls of each recipe
  bool b_freed = false, c_freed = false;  // after the forward, before the backward
};

// b = a * a, c = gelu(b), loss = sum(c * b). gelu saves b, mul saves c and b; inside a scope b and
// c are recipes, c's built on b's.
Outcome run_graph(bool scoped) {
  Tensor a = Tensor::from_vector({0.3, -1.2, 2.5, 0.7}, {4}, DType::F64);
  a.set_requires_grad(true);
  Outcome r;
  Tensor loss;
  std::weak_ptr<Storage> b_storage, c_storage;
  {
    std::optional<autograd::RecomputeScope> scope;
    if (scoped) scope.emplace();
    const Tensor ad = a.detach();
    Tensor b = autograd::recomputable(ops::mul(a, a), [&r, ad] {
      ++r.b_made;
      return ops::mul(ad, ad);
    });
    const std::function<Tensor()> b_again = autograd::recipe_of(b);
    Tensor c = autograd::recomputable(ops::gelu(b), [&r, b_again] {
      ++r.c_made;
      return ops::gelu(b_again());
    });
    loss = ops::sum(ops::mul(c, b));
    b_storage = b.storage();
    c_storage = c.storage();
  }
  r.b_freed = b_storage.expired();
  r.c_freed = c_storage.expired();
  loss.backward();
  const Tensor g = a.grad();
  r.grad.resize(4);
  std::memcpy(r.grad.data(), g.raw_data(), 4 * sizeof(double));
  return r;
}

TEST(Recompute, ComposedRecipesKeepNoValueRunOnceAndGiveThePlainGradientBitForBit) {
  const Outcome plain = run_graph(false), scoped = run_graph(true);
  EXPECT_FALSE(plain.b_freed);  // saved by gelu and mul
  EXPECT_TRUE(scoped.b_freed);  // c's recipe holds b's recipe, not b
  EXPECT_TRUE(scoped.c_freed);
  EXPECT_EQ(plain.b_made + plain.c_made, 0);
  // b is made once, for c's recipe, and shared with the two nodes that saved it.
  EXPECT_EQ(scoped.b_made, 1);
  EXPECT_EQ(scoped.c_made, 1);
  EXPECT_EQ(std::memcmp(scoped.grad.data(), plain.grad.data(), 4 * sizeof(double)), 0);
}

// A scope that keeps matmul outputs (full checkpointing's rerun) keeps a tensor marked as one, and
// still recomputes the others.
TEST(Recompute, AScopeThatKeepsMatmulOutputsKeepsThem) {
  Tensor a = Tensor::from_vector({0.3, -1.2}, {2}, DType::F64);
  a.set_requires_grad(true);
  std::weak_ptr<Storage> kept, dropped;
  Tensor loss;
  {
    autograd::RecomputeScope scope(/*matmuls=*/false);
    const Tensor ad = a.detach();
    Tensor m = autograd::recomputable(ops::mul(a, a), [ad] { return ops::mul(ad, ad); }, /*matmul=*/true);
    Tensor n = autograd::recomputable(ops::mul(a, ad), [ad] { return ops::mul(ad, ad); });
    loss = ops::sum(ops::add(ops::gelu(m), ops::gelu(n)));
    kept = m.storage();
    dropped = n.storage();
  }
  EXPECT_FALSE(kept.expired());
  EXPECT_TRUE(dropped.expired());
  loss.backward();
  EXPECT_TRUE(a.grad().defined());
}

}  // namespace
}  // namespace strand
