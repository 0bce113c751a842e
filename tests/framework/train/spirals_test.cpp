// End to end: a small MLP (Linear, tanh, Linear, gelu, Linear, cross-entropy) trained with
// AdamW, a warmup + cosine schedule and gradient clipping on the two-spirals problem must
// classify its training set.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "framework/autograd/grad_mode.h"
#include "framework/core/random.h"
#include "framework/nn/linear.h"
#include "framework/ops/elementwise.h"
#include "framework/ops/loss.h"
#include "framework/optim/adamw.h"
#include "framework/optim/clip.h"
#include "framework/optim/schedule.h"

namespace strand {
namespace {

struct Spirals {
  Tensor points;   // [N, 2] float32
  Tensor labels;   // [N] int32, 0 or 1
};

// Two interleaved arms of 1.5 turns each, radius growing from 0.1 to 1, with a little
// Gaussian jitter drawn from the counter-based generator (the same set on every run).
Spirals make_spirals(int64_t per_class, uint64_t seed) {
  std::vector<double> xy;
  std::vector<double> label;
  for (int64_t k = 0; k < 2; ++k)
    for (int64_t i = 0; i < per_class; ++i) {
      const double t = static_cast<double>(i) / static_cast<double>(per_class);
      const double r = 0.1 + 0.9 * t;
      const double theta = 3.0 * std::numbers::pi * t + static_cast<double>(k) * std::numbers::pi;
      const uint64_t idx = static_cast<uint64_t>(k * per_class + i);
      xy.push_back(r * std::cos(theta) + 0.02 * random::normal(seed, 0, idx));
      xy.push_back(r * std::sin(theta) + 0.02 * random::normal(seed, 1, idx));
      label.push_back(static_cast<double>(k));
    }
  const int64_t n = 2 * per_class;
  return {Tensor::from_vector(xy, {n, 2}), Tensor::from_vector(label, {n}, DType::I32)};
}

struct Mlp : nn::Module {
  std::shared_ptr<nn::Linear> fc1, fc2, fc3;
  explicit Mlp(uint64_t seed) {
    // Wider first-layer weights than GPT-2's 0.02: the inputs are 2-D coordinates in [-1, 1],
    // and the spiral needs features that vary over that range.
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(2, 64, nn::LinearOptions{.seed = seed, .init_std = 2.0}));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(64, 64, nn::LinearOptions{.seed = seed + 1, .init_std = 0.125}));
    fc3 = register_module("fc3", std::make_shared<nn::Linear>(64, 2, nn::LinearOptions{.seed = seed + 2, .init_std = 0.125}));
  }
  Tensor forward(const Tensor& x) const {
    return fc3->forward(ops::gelu(fc2->forward(ops::tanh(fc1->forward(x)))));
  }
};

double accuracy(const Tensor& logits, const Tensor& labels) {
  const auto l = logits.to_vector(), y = labels.to_vector();
  int64_t correct = 0;
  for (size_t i = 0; i < y.size(); ++i) correct += ((l[2 * i + 1] > l[2 * i]) ? 1.0 : 0.0) == y[i];
  return static_cast<double>(correct) / static_cast<double>(y.size());
}

TEST(Spirals, MlpWithAdamWLearnsTheTrainingSet) {
  const Spirals data = make_spirals(200, 2024);
  Mlp model(7);
  optim::AdamW opt(optim::decay_by_rank(model.named_parameters()),
                   {.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .weight_decay = 1e-4});
  const int64_t steps = 300;
  const optim::LrSchedule schedule = optim::LrSchedule::make(1e-2, 1e-3, 20, steps, optim::DecayKind::Cosine);

  double first_loss = 0, last_loss = 0;
  for (int64_t step = 0; step < steps; ++step) {
    opt.zero_grad();
    Tensor loss = ops::cross_entropy(model.forward(data.points), data.labels);
    if (step == 0) first_loss = loss.item();
    last_loss = loss.item();
    loss.backward();
    const double norm = optim::clip_grad_norm(model.parameters(), 5.0);
    ASSERT_TRUE(std::isfinite(norm)) << "step " << step;
    opt.set_lr(schedule.lr_at(step));
    opt.step();
  }
  autograd::NoGradGuard no_grad;
  const double acc = accuracy(model.forward(data.points), data.labels);
  EXPECT_NEAR(first_loss, std::log(2.0), 0.5) << "an untrained two-class model starts near log 2";
  EXPECT_LT(last_loss, 0.1 * first_loss);
  EXPECT_GE(acc, 0.95) << "training accuracy after " << steps << " steps, final loss " << last_loss;
  EXPECT_EQ(opt.step_count(), steps);
}

}  // namespace
}  // namespace strand
