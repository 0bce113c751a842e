// autograd::expose: an intermediate of a checkpointed piece, handed out and used by a loss outside
// it, sends its gradient into the piece's rerun, so the gradients are the plain graph's bit for
// bit; an exposure no loss uses changes nothing; a rerun that exposes other tensors is an error.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "framework/autograd/checkpoint.h"
#include "framework/core/error.h"
#include "framework/core/tensor.h"
#include "framework/ops/elementwise.h"
#include "framework/ops/reduce.h"

namespace strand {
namespace {

std::vector<double> bits_of(const Tensor& g) {
  std::vector<double> v(static_cast<size_t>(g.numel()));
  std::memcpy(v.data(), g.raw_data(), v.size() * sizeof(double));
  return v;
}

struct Grads {
  std::vector<double> x, w;
};

// The piece: t = x * w (exposed), y = gelu(t). Loss: sum(3 y) + (use_t ? sum(t^2 * t) : 0), the
// piece checkpointed or not.
Grads run(bool checkpointed, bool use_t) {
  Tensor x = Tensor::from_vector({0.3, -1.2, 2.5, 0.7, -0.4, 1.9}, {6}, DType::F64);
  Tensor w = Tensor::from_vector({1.1, 0.4, -0.8, 2.0, -1.5, 0.6}, {6}, DType::F64);
  x.set_requires_grad(true);
  w.set_requires_grad(true);
  Tensor t_out;
  const autograd::CheckpointFn piece = [&](const std::vector<Tensor>& in) {
    const Tensor t = ops::mul(in[0], w);
    autograd::expose(t, [&](const Tensor& e) { t_out = e; });
    return ops::gelu(t);
  };
  const Tensor y = checkpointed ? autograd::checkpoint(piece, {x}, {w}) : piece({x});
  EXPECT_TRUE(t_out.defined());
  EXPECT_TRUE(t_out.requires_grad());
  Tensor loss = ops::sum(ops::mul_scalar(y, 3.0));
  if (use_t) loss = ops::add(loss, ops::sum(ops::mul(ops::square(t_out), t_out)));
  loss.backward();
  return {bits_of(x.grad()), bits_of(w.grad())};
}

TEST(Expose, TheExposedTensorsGradientEntersTheRerunBitForBit) {
  const Grads plain = run(false, true), checked = run(true, true);
  EXPECT_EQ(checked.x, plain.x);
  EXPECT_EQ(checked.w, plain.w);
  // The exposed term matters: without it the gradients differ.
  EXPECT_NE(run(false, false).x, plain.x);
}

TEST(Expose, AnExposureNoLossUsesChangesNothing) {
  const Grads plain = run(false, false), checked = run(true, false);
  EXPECT_EQ(checked.x, plain.x);
  EXPECT_EQ(checked.w, plain.w);
}

TEST(Expose, OutsideACheckpointTheReceiverGetsTheTensorAtOnce) {
  const Tensor a = Tensor::from_vector({1.0, 2.0}, {2}, DType::F64);
  Tensor got;
  autograd::expose(a, [&](const Tensor& e) { got = e; });
  EXPECT_EQ(got.storage(), a.storage());
}

TEST(Expose, ARerunThatExposesOtherTensorsIsAnError) {
  Tensor x = Tensor::from_vector({0.5, -0.5}, {2}, DType::F64);
  x.set_requires_grad(true);
  int runs = 0;
  Tensor t_out;
  const autograd::CheckpointFn piece = [&](const std::vector<Tensor>& in) {
    const Tensor t = ops::mul(in[0], in[0]);
    if (runs++ == 0) autograd::expose(t, [&](const Tensor& e) { t_out = e; });  // the forward only
    return ops::gelu(t);
  };
  const Tensor y = autograd::checkpoint(piece, {x}, {});
  const Tensor loss = ops::add(ops::sum(y), ops::sum(t_out));
  try {
    loss.backward();
    FAIL() << "a rerun without the forward's exposure accepted";
  } catch (const AutogradError& e) {
    EXPECT_NE(std::string(e.what()).find("the rerun exposed 0 tensors, the forward 1"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace strand
