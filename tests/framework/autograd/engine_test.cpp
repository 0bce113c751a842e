// The autograd engine: accumulation, shared subgraphs, retain_graph, the in-place check on
// saved tensors, grad mode, detach, saved-tensor hooks, autograd::grad, and the checks the
// engine makes on every gradient a node returns.
#include <gtest/gtest.h>

#include <any>
#include <cmath>

#include "framework/autograd/engine.h"
#include "framework/autograd/grad_mode.h"
#include "framework/autograd/node.h"
#include "framework/autograd/saved_tensor.h"
#include "framework/core/error.h"
#include "framework/ops/elementwise.h"
#include "framework/ops/reduce.h"

namespace strand {
namespace {

constexpr double kTol = 8 * 2.220446049250313e-16;  // a few float64 ulps, values are O(1)

Tensor leaf(const std::vector<double>& v, DType dt = DType::F64) {
  Tensor t = Tensor::from_vector(v, {static_cast<int64_t>(v.size())}, dt);
  t.set_requires_grad(true);
  return t;
}

template <class F>
std::string autograd_error_of(F&& f) {
  try {
    f();
  } catch (const AutogradError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected AutogradError";
  return "";
}

TEST(Engine, GradientsAccumulateAcrossBackwardCalls) {
  Tensor x = leaf({0.5, -1.0, 2.0});
  ops::sum(ops::square(x)).backward();
  const auto once = x.grad().to_vector();
  for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(once[i], 2 * x.to_vector()[i], kTol);
  ops::sum(ops::mul_scalar(x, 3.0)).backward();
  const auto twice = x.grad().to_vector();
  for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(twice[i], once[i] + 3.0, kTol);
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
}

TEST(Engine, LeafGradientNeverAliasesATensorSeenElsewhere) {
  // A root gradient the caller keeps: the leaf copies it, so writing either leaves the other alone.
  Tensor x = leaf({1.0, 2.0, 3.0});
  Tensor g = Tensor::from_vector({0.5, 0.25, 0.125}, {3}, DType::F64);
  x.backward(g);
  g.fill_(7.0);
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{0.5, 0.25, 0.125}));
  x.backward(Tensor::from_vector({1.0, 1.0, 1.0}, {3}, DType::F64));
  EXPECT_EQ(g.to_vector(), (std::vector<double>{7.0, 7.0, 7.0}));
  // One gradient buffer handed to two leaves (add's backward): each leaf accumulates alone.
  Tensor a = leaf({1.0, 2.0}), b = leaf({3.0, 4.0});
  ops::sum(ops::add(a, b)).backward();
  ops::sum(ops::mul_scalar(a, 3.0)).backward();
  EXPECT_EQ(a.grad().to_vector(), (std::vector<double>{4.0, 4.0}));
  EXPECT_EQ(b.grad().to_vector(), (std::vector<double>{1.0, 1.0}));
}

TEST(Engine, PostAccumulateHookSeesTheFinalGradientOncePerPass) {
  // x reaches the loss by three paths; the hook must run once, after all three have been added.
  Tensor x = leaf({0.3, -0.8});
  Tensor t = ops::tanh(x);
  std::vector<std::vector<double>> seen;
  const int id = autograd::add_post_accumulate_hook(x, [&] { seen.push_back(x.grad().to_vector()); });
  ops::sum(ops::add(ops::mul(t, t), t)).backward();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], x.grad().to_vector());
  ops::sum(ops::mul_scalar(x, 2.0)).backward();  // a second pass accumulates, and runs the hook again
  ASSERT_EQ(seen.size(), 2u);
  for (size_t i = 0; i < 2; ++i) EXPECT_NEAR(seen[1][i], seen[0][i] + 2.0, kTol);
  autograd::remove_post_accumulate_hook(x, id);
  ops::sum(x).backward();
  EXPECT_EQ(seen.size(), 2u);
  Tensor not_leaf = ops::tanh(x);
  EXPECT_THROW(autograd::add_post_accumulate_hook(not_leaf, [] {}), AutogradError);
}

TEST(Engine, SharedSubgraphSumsBothPaths) {
  // z = t * t + t with t = tanh(x), t used three times: dz/dx = (2t + 1)(1 - t^2).
  Tensor x = leaf({0.3, -0.8, 1.5});
  Tensor t = ops::tanh(x);
  ops::sum(ops::add(ops::mul(t, t), t)).backward();
  const auto g = x.grad().to_vector(), xv = x.to_vector();
  for (size_t i = 0; i < 3; ++i) {
    const double ti = std::tanh(xv[i]);
    EXPECT_NEAR(g[i], (2 * ti + 1) * (1 - ti * ti), kTol) << i;
  }
  // The same leaf twice as direct inputs: d(x * x)/dx = 2x.
  Tensor y = leaf({1.5, -2.0});
  ops::sum(ops::mul(y, y)).backward();
  EXPECT_EQ(y.grad().to_vector(), (std::vector<double>{3.0, -4.0}));
}

TEST(Engine, RetainGraphAllowsASecondBackward) {
  Tensor x = leaf({1.0, 2.0});
  Tensor s = ops::sum(ops::exp(x));
  s.backward(Tensor(), /*retain_graph=*/true);
  s.backward();
  const auto g = x.grad().to_vector();
  EXPECT_NEAR(g[0], 2 * std::exp(1.0), kTol * 8);
  EXPECT_NEAR(g[1], 2 * std::exp(2.0), kTol * 16);
}

TEST(Engine, SecondBackwardWithoutRetainGraphNamesTheOp) {
  Tensor x = leaf({1.0, 2.0});
  Tensor s = ops::sum(ops::exp(x));
  s.backward();
  const std::string msg = autograd_error_of([&] { s.backward(); });
  EXPECT_NE(msg.find("backward of 'sum'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("retain_graph"), std::string::npos) << msg;
  // A graph that shares the freed exp node also fails, naming exp.
  Tensor x2 = leaf({1.0});
  Tensor e = ops::exp(x2);
  ops::sum(e).backward();
  const std::string msg2 = autograd_error_of([&] { ops::sum(ops::mul_scalar(e, 2.0)).backward(); });
  EXPECT_NE(msg2.find("'exp'"), std::string::npos) << msg2;
}

TEST(Engine, SavedTensorModifiedInPlaceIsAnError) {
  // exp saves its output; overwriting it would give a wrong gradient.
  Tensor x = leaf({0.1, 0.2});
  Tensor y = ops::exp(x);
  Tensor s = ops::sum(y);
  y.fill_(0.0);
  std::string msg = autograd_error_of([&] { s.backward(); });
  EXPECT_NE(msg.find("backward of 'exp'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("modified in place"), std::string::npos) << msg;

  // mul saves its inputs; axpy_ on one of them (a leaf here) bumps its version.
  Tensor a = leaf({1.0, 2.0}), b = leaf({3.0, 4.0});
  Tensor p = ops::sum(ops::mul(a, b));
  ops::axpy_(a, Tensor::ones({2}, DType::F64), 0.5);
  msg = autograd_error_of([&] { p.backward(); });
  EXPECT_NE(msg.find("backward of 'mul'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("modified in place"), std::string::npos) << msg;

  // A write through a view of the saved tensor shares its storage, so it is caught too.
  Tensor z = leaf({1.0, 2.0, 3.0, 4.0});
  Tensor ez = ops::exp(z);
  Tensor sz = ops::sum(ez);
  ez.as_strided({2}, {2}, 1).fill_(5.0);
  msg = autograd_error_of([&] { sz.backward(); });
  EXPECT_NE(msg.find("modified in place"), std::string::npos) << msg;
}

TEST(Engine, NoGradGuardRecordsNothing) {
  Tensor x = leaf({1.0, 2.0});
  {
    autograd::NoGradGuard guard;
    EXPECT_FALSE(autograd::grad_enabled());
    Tensor y = ops::mul(ops::exp(x), x);
    EXPECT_FALSE(y.requires_grad());
    EXPECT_EQ(y.grad_fn(), nullptr);
    {
      autograd::NoGradGuard nested;
    }
    EXPECT_FALSE(autograd::grad_enabled()) << "a nested guard restores the outer state";
  }
  EXPECT_TRUE(autograd::grad_enabled());
  Tensor y = ops::exp(x);
  EXPECT_TRUE(y.requires_grad());
  ASSERT_NE(y.grad_fn(), nullptr);
  EXPECT_EQ(y.grad_fn()->name(), "exp");
}

TEST(Engine, DetachStopsGradients) {
  // z = exp(x) * exp(detach(x)): only the first factor is differentiated.
  Tensor x = leaf({0.5, -0.5});
  Tensor d = x.detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_EQ(d.storage(), x.storage()) << "detach shares storage";
  ops::sum(ops::mul(ops::exp(x), ops::exp(d))).backward();
  const auto g = x.grad().to_vector();
  EXPECT_NEAR(g[0], std::exp(1.0), kTol * 4);
  EXPECT_NEAR(g[1], std::exp(-1.0), kTol);
  // A graph built only from detached tensors cannot be backpropagated.
  Tensor only = ops::sum(ops::exp(d));
  EXPECT_FALSE(only.requires_grad());
  EXPECT_THROW(only.backward(), AutogradError);
}

TEST(Engine, SavedTensorHooksPackAndUnpack) {
  auto loss_of = [](const Tensor& x) { return ops::sum(ops::mul(ops::exp(x), x)); };  // saves y, then exp(x) and x
  Tensor x1 = leaf({0.25, -1.5, 0.75}, DType::F32);
  loss_of(x1).backward();

  int packs = 0, unpacks = 0;
  Tensor x2 = leaf({0.25, -1.5, 0.75}, DType::F32);
  Tensor loss;
  {
    // Pack to a float64 copy (as an offloading hook would move data elsewhere), unpack back.
    autograd::SavedTensorHooksGuard hooks({
        [&](const Tensor& t) -> std::any {
          ++packs;
          return t.copy_as(DType::F64, Device::cpu());
        },
        [&](const std::any& a) -> Tensor {
          ++unpacks;
          return std::any_cast<Tensor>(a).copy_as(DType::F32, Device::cpu());
        }});
    loss = loss_of(x2);
  }
  EXPECT_EQ(packs, 3) << "exp saves its output, mul saves both inputs";
  EXPECT_EQ(unpacks, 0) << "nothing is unpacked before backward";
  loss.backward();
  EXPECT_EQ(unpacks, 3);
  EXPECT_EQ(x2.grad().to_vector(), x1.grad().to_vector()) << "float32 -> float64 -> float32 is exact";
  // Outside the guard, saving no longer goes through the hooks.
  Tensor x3 = leaf({1.0});
  ops::sum(ops::exp(x3)).backward();
  EXPECT_EQ(packs, 3);
}

TEST(Engine, GradReturnsGradientsWithoutTouchingLeaves) {
  Tensor a = leaf({1.0, 2.0}), b = leaf({3.0, -1.0});
  Tensor y = ops::sum(ops::mul(ops::square(a), b));
  auto g = autograd::grad({y}, {Tensor()}, {a, b});
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(g[0].to_vector(), (std::vector<double>{6.0, -4.0}));  // 2 a b
  EXPECT_EQ(g[1].to_vector(), (std::vector<double>{1.0, 4.0}));   // a^2
  EXPECT_FALSE(a.grad().defined());
  EXPECT_FALSE(b.grad().defined());
  // An input the root does not depend on gets zeros.
  Tensor c = leaf({7.0});
  auto gc = autograd::grad({ops::sum(ops::exp(a))}, {Tensor()}, {c});
  EXPECT_EQ(gc[0].to_vector(), (std::vector<double>{0.0}));
  EXPECT_THROW(autograd::grad({ops::sum(ops::exp(a))}, {Tensor()}, {Tensor::zeros({1})}), AutogradError);
}

TEST(Engine, RootChecks) {
  Tensor x = leaf({1.0, 2.0});
  Tensor y = ops::exp(x);
  std::string msg = autograd_error_of([&] { y.backward(); });
  EXPECT_NE(msg.find("non-scalar"), std::string::npos) << msg;
  y.backward(Tensor::from_vector({1.0, 0.0}, {2}, DType::F64));
  EXPECT_NEAR(x.grad().to_vector()[0], std::exp(1.0), kTol * 4);
  EXPECT_EQ(x.grad().to_vector()[1], 0.0);
  EXPECT_THROW(ops::exp(x).backward(Tensor::ones({3}, DType::F64)), AutogradError);
}

// A node whose backward returns whatever gradient it is told to: for testing the engine's checks.
struct FixedGradBackward final : autograd::Node {
  std::vector<Tensor> grads;
  explicit FixedGradBackward(std::vector<Tensor> g) : Node("fixed_grad"), grads(std::move(g)) {}
  std::vector<Tensor> apply(std::vector<Tensor>&&) override { return grads; }
};

Tensor apply_fixed(const Tensor& x, std::vector<Tensor> grads) {
  Tensor y = Tensor::zeros(x.shape(), x.dtype());
  if (auto n = autograd::make_node<FixedGradBackward>({&x}, std::move(grads))) autograd::set_history(n, {&y});
  return y;
}

TEST(Engine, WrongGradientFromANodeIsAnError) {
  Tensor x = leaf({1.0, 2.0, 3.0});
  std::string msg = autograd_error_of([&] { ops::sum(apply_fixed(x, {Tensor::zeros({7}, DType::F64)})).backward(); });
  EXPECT_NE(msg.find("backward of 'fixed_grad'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[7]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[3]"), std::string::npos) << msg;

  msg = autograd_error_of([&] { ops::sum(apply_fixed(x, {Tensor::zeros({3}, DType::F32)})).backward(); });
  EXPECT_NE(msg.find("float32"), std::string::npos) << msg;

  msg = autograd_error_of([&] {
    ops::sum(apply_fixed(x, {Tensor::zeros({3}, DType::F64), Tensor::zeros({3}, DType::F64)})).backward();
  });
  EXPECT_NE(msg.find("returned 2 gradients for 1 inputs"), std::string::npos) << msg;

  // The right gradient passes through to the leaf.
  ops::sum(apply_fixed(x, {Tensor::full({3}, 0.5, DType::F64)})).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{0.5, 0.5, 0.5}));
}

// Returns a fresh gradient of ones that nothing else holds, and remembers where its data lives.
struct FreshGradBackward final : autograd::Node {
  const void** data;
  explicit FreshGradBackward(const void** d) : Node("fresh_grad"), data(d) {}
  std::vector<Tensor> apply(std::vector<Tensor>&&) override {
    Tensor g = Tensor::ones(input_meta[0].shape, input_meta[0].dtype);
    *data = g.raw_data();
    return {g};
  }
};

TEST(Engine, LeafTakesAFreshGradientBufferWithoutCopying) {
  // The first gradient of a leaf, when no other tensor can see its buffer, becomes the leaf's
  // gradient as it is (no copy: about 0.5 GB a step for GPT-2's weights); later passes add into it.
  Tensor x = leaf({1.0, 2.0, 3.0});
  const void* data = nullptr;
  Tensor y = Tensor::zeros(x.shape(), x.dtype());
  if (auto n = autograd::make_node<FreshGradBackward>({&x}, &data)) autograd::set_history(n, {&y});
  ops::sum(y).backward();
  EXPECT_EQ(x.grad().raw_data(), data);
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{1.0, 1.0, 1.0}));
  ops::sum(ops::mul_scalar(x, 2.0)).backward();
  EXPECT_EQ(x.grad().raw_data(), data);
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{3.0, 3.0, 3.0}));
  // A buffer the node keeps is copied instead (FixedGradBackward holds its gradients).
  Tensor w = leaf({1.0, 2.0});
  const Tensor kept = Tensor::full({2}, 0.5, DType::F64);
  ops::sum(apply_fixed(w, {kept})).backward();
  EXPECT_NE(w.grad().raw_data(), kept.raw_data());
}

}  // namespace
}  // namespace strand
