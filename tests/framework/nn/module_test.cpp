// Module tree and the basic layers: dotted names, counts, loading, train/eval, zero_grad,
// initialisation, and Linear / LayerNorm / RMSNorm / Embedding forward values against direct
// computations, plus their bad-input errors.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "framework/core/error.h"
#include "framework/nn/embedding.h"
#include "framework/nn/layer_norm.h"
#include "framework/nn/linear.h"
#include "framework/ops/reduce.h"
#include "support/gradcheck.h"
#include "support/tolerance.h"

namespace strand {
namespace {

// A transformer-like tree: Net { block: Stack { 0: Block, 1: Block }, head: Linear }.
struct Block : nn::Module {
  std::shared_ptr<nn::LayerNorm> ln;
  std::shared_ptr<nn::Linear> fc;
  Block(int64_t c, uint64_t seed) {
    ln = register_module("ln", std::make_shared<nn::LayerNorm>(c));
    fc = register_module("fc", std::make_shared<nn::Linear>(c, 2 * c, true, seed));
  }
};

struct Stack : nn::Module {
  std::vector<std::shared_ptr<Block>> blocks;
  Stack(int64_t c, int n) {
    for (int i = 0; i < n; ++i) blocks.push_back(register_module(std::to_string(i), std::make_shared<Block>(c, 10 + i)));
  }
};

struct Net : nn::Module {
  std::shared_ptr<Stack> block;
  std::shared_ptr<nn::Linear> head;
  Tensor scale;
  explicit Net(int64_t c) {
    scale = register_parameter("scale", Tensor::ones({1}));
    block = register_module("block", std::make_shared<Stack>(c, 2));
    head = register_module("head", std::make_shared<nn::Linear>(2 * c, 3, false, 99));
    register_buffer("mask", Tensor::zeros({4}));
  }
};

TEST(Module, HierarchicalNamesInRegistrationOrder) {
  Net net(4);
  std::vector<std::string> names;
  for (auto& [n, _] : net.named_parameters()) names.push_back(n);
  const std::vector<std::string> expect = {"scale",
                                           "block.0.ln.weight", "block.0.ln.bias", "block.0.fc.weight", "block.0.fc.bias",
                                           "block.1.ln.weight", "block.1.ln.bias", "block.1.fc.weight", "block.1.fc.bias",
                                           "head.weight"};
  EXPECT_EQ(names, expect);
  EXPECT_EQ(net.named_parameters("model.")[1].first, "model.block.0.ln.weight");
  ASSERT_EQ(net.named_buffers().size(), 1u);
  EXPECT_EQ(net.named_buffers()[0].first, "mask");
  for (const Tensor& p : net.parameters()) EXPECT_TRUE(p.requires_grad() && p.is_leaf());
}

TEST(Module, ParameterCounts) {
  Net net(4);
  // scale 1; per block: ln 4 + 4, fc 4*8 + 8; head 8*3 without bias.
  EXPECT_EQ(net.parameter_count(), 1 + 2 * (8 + 40) + 24);
  EXPECT_EQ(nn::Linear(5, 7).parameter_count(), 42);
  EXPECT_EQ(nn::Linear(5, 7, false).parameter_count(), 35);
  EXPECT_EQ(nn::LayerNorm(6, 1e-5, false).parameter_count(), 6);
  EXPECT_EQ(nn::RMSNorm(6).parameter_count(), 6);
  EXPECT_EQ(nn::Embedding(11, 3).parameter_count(), 33);
}

TEST(Module, ParametersAreSharedNotCopied) {
  Net net(4);
  Tensor w = net.parameter("block.1.fc.weight");
  EXPECT_EQ(w.impl(), net.block->blocks[1]->fc->weight().impl());
  EXPECT_EQ(w.shape(), (Shape{4, 8}));
  try {
    net.parameter("block.2.fc.weight");
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("'block.2.fc.weight'"), std::string::npos) << e.what();
  }
}

TEST(Module, LoadParametersCopiesByNameAndChecks) {
  Net a(4), b(4);
  b.parameter("head.weight").fill_(0.5);
  auto values = b.named_parameters();
  std::vector<std::pair<std::string, Tensor>> as_f64;
  for (auto& [n, t] : values) as_f64.emplace_back(n, t.copy_as(DType::F64, Device::cpu()));
  a.load_parameters(as_f64);
  for (auto& [n, t] : a.named_parameters()) EXPECT_EQ(t.to_vector(), b.parameter(n).to_vector()) << n;
  EXPECT_EQ(a.parameter("head.weight").dtype(), DType::F32) << "loading converts to the parameter dtype";

  auto missing = as_f64;
  missing.pop_back();
  EXPECT_THROW(a.load_parameters(missing), ValueError);
  // Not strict: the tensors given are copied, the one left out keeps its value.
  for (auto& [n, t] : a.named_parameters()) t.fill_(0.25);
  a.load_parameters(missing, /*strict=*/false);
  for (auto& [n, t] : missing) EXPECT_EQ(a.parameter(n).to_vector(), t.to_vector()) << n;
  for (double v : a.parameter(as_f64.back().first).to_vector()) ASSERT_EQ(v, 0.25) << as_f64.back().first;
  auto extra = as_f64;
  extra.emplace_back("block.0.attn.weight", Tensor::zeros({1}));
  try {
    a.load_parameters(extra);
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("'block.0.attn.weight'"), std::string::npos) << e.what();
  }
  auto wrong = as_f64;
  wrong[3].second = Tensor::zeros({8, 4});
  a.parameter("scale").fill_(7.0);
  try {
    a.load_parameters(wrong);
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("block.0.fc.weight"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[8, 4]"), std::string::npos) << e.what();
  }
  EXPECT_EQ(a.parameter("scale").item(), 7.0) << "a rejected load copies nothing";
}

TEST(Module, TrainEvalFlagReachesEverySubmodule) {
  Net net(4);
  EXPECT_TRUE(net.is_training());
  net.train(false);
  EXPECT_FALSE(net.is_training());
  EXPECT_FALSE(net.block->blocks[1]->ln->is_training());
  EXPECT_FALSE(net.head->is_training());
  net.train();
  EXPECT_TRUE(net.block->blocks[0]->fc->is_training());
}

TEST(Module, ZeroGradDropsEveryGradient) {
  nn::Linear lin(3, 2, true, 4);
  Tensor x = Tensor::randn({5, 3}, 1);
  ops::sum(lin.forward(x)).backward();
  ASSERT_TRUE(lin.weight().grad().defined());
  ASSERT_TRUE(lin.bias().grad().defined());
  EXPECT_EQ(lin.bias().grad().to_vector(), (std::vector<double>{5.0, 5.0})) << "d sum / d b = rows";
  lin.zero_grad();
  EXPECT_FALSE(lin.weight().grad().defined());
  EXPECT_FALSE(lin.bias().grad().defined());
}

TEST(Linear, ForwardMatchesDirectComputation) {
  for (DType dt : {DType::F32, DType::F64}) {
    const double eps = strand::testing::dtype_eps(dt);
    nn::Linear lin(3, 4, true, 7, dt);
    Tensor b = lin.bias();
    b.copy_from(Tensor::from_vector({0.1, -0.2, 0.3, 0.4}, {4}));
    Tensor x = Tensor::randn({2, 5, 3}, 3, dt);
    Tensor y = lin.forward(x);
    ASSERT_EQ(y.shape(), (Shape{2, 5, 4}));
    const auto xv = x.to_vector(), wv = lin.weight().to_vector(), bv = b.to_vector(), yv = y.to_vector();
    for (int64_t r = 0; r < 10; ++r)
      for (int64_t o = 0; o < 4; ++o) {
        double ref = bv[o], mag = std::abs(bv[o]);
        for (int64_t i = 0; i < 3; ++i) {
          ref += xv[r * 3 + i] * wv[i * 4 + o];  // W is [in, out]: y = x @ W + b
          mag += std::abs(xv[r * 3 + i] * wv[i * 4 + o]);
        }
        ASSERT_NEAR(yv[r * 4 + o], ref, 4 * eps * mag) << dtype_name(dt) << " row " << r << " out " << o;
      }
  }
}

TEST(Linear, VectorInputAndGradients) {
  nn::Linear lin(3, 2, true, 1, DType::F64);
  Tensor x = Tensor::from_vector({1.0, -2.0, 0.5}, {3}, DType::F64);
  Tensor y = lin.forward(x);
  ASSERT_EQ(y.shape(), (Shape{2}));
  const auto w = lin.weight().to_vector();
  EXPECT_NEAR(y.to_vector()[1], 1.0 * w[1] - 2.0 * w[3] + 0.5 * w[5], 1e-15);
  testing::expect_gradients_match([&](const std::vector<Tensor>& in) { return lin.forward(in[0]); },
                                  {[] { Tensor t = Tensor::randn({4, 3}, 2, DType::F64); t.set_requires_grad(true); return t; }()},
                                  "linear input");
  testing::expect_gradients_match(
      [&](const std::vector<Tensor>&) { return lin.forward(Tensor::randn({4, 3}, 2, DType::F64)); },
      {lin.weight(), lin.bias()}, "linear weight and bias");
}

TEST(Linear, InitIsNormalWithStd002AndDeterministic) {
  nn::Linear a(64, 64, true, 5), b(64, 64, true, 5), c(64, 64, true, 6);
  EXPECT_EQ(a.weight().to_vector(), b.weight().to_vector());
  EXPECT_NE(a.weight().to_vector(), c.weight().to_vector());
  EXPECT_EQ(a.bias().to_vector(), std::vector<double>(64, 0.0));
  const auto w = a.weight().to_vector();
  const double n = static_cast<double>(w.size());
  double mean = 0, sq = 0;
  for (double v : w) mean += v;
  mean /= n;
  for (double v : w) sq += (v - mean) * (v - mean);
  const double sd = std::sqrt(sq / (n - 1));
  // Five standard errors of the sample mean and the sample standard deviation.
  EXPECT_NEAR(mean, 0.0, 5 * 0.02 / std::sqrt(n));
  EXPECT_NEAR(sd, 0.02, 5 * 0.02 / std::sqrt(2 * n));
  nn::Linear scaled(8, 8, {.bias = false, .seed = 5, .init_std = 0.01});
  EXPECT_FALSE(scaled.bias().defined());
  EXPECT_NEAR(scaled.weight().to_vector()[3], 0.5 * nn::Linear(8, 8, false, 5).weight().to_vector()[3], 1e-9);
}

TEST(Linear, BadInputNamesLayerAndShapes) {
  nn::Linear lin(3, 4);
  try {
    lin.forward(Tensor::zeros({2, 5}));
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("linear"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[2, 5]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[3, 4]"), std::string::npos) << msg;
  }
  EXPECT_THROW(nn::Linear(0, 4), ValueError);
}

TEST(LayerNormModule, ForwardMatchesDirectComputation) {
  for (bool bias : {true, false}) {
    nn::LayerNorm ln(5, 1e-5, bias, DType::F64);
    Tensor w = ln.weight();
    w.copy_from(Tensor::from_vector({1.0, 2.0, 0.5, -1.0, 3.0}, {5}));
    if (bias) {
      Tensor b = ln.bias();
      b.copy_from(Tensor::from_vector({0.1, 0.2, 0.3, 0.4, 0.5}, {5}, DType::F64));
    }
    Tensor x = Tensor::randn({3, 5}, 8, DType::F64);
    const auto xv = x.to_vector(), yv = ln.forward(x).to_vector(), wv = w.to_vector();
    const auto bv = bias ? ln.bias().to_vector() : std::vector<double>(5, 0.0);
    for (int r = 0; r < 3; ++r) {
      double mean = 0, var = 0;
      for (int j = 0; j < 5; ++j) mean += xv[r * 5 + j] / 5;
      for (int j = 0; j < 5; ++j) var += (xv[r * 5 + j] - mean) * (xv[r * 5 + j] - mean) / 5;
      for (int j = 0; j < 5; ++j) {
        const double ref = (xv[r * 5 + j] - mean) / std::sqrt(var + 1e-5) * wv[j] + (bias ? bv[j] : 0.0);
        ASSERT_NEAR(yv[r * 5 + j], ref, 64 * std::numeric_limits<double>::epsilon() * (1 + std::abs(ref)));
      }
    }
  }
}

TEST(RMSNormModule, ForwardMatchesDirectComputation) {
  nn::RMSNorm norm(4, 1e-6, DType::F64);
  EXPECT_EQ(norm.weight().to_vector(), std::vector<double>(4, 1.0));
  Tensor x = Tensor::from_vector({1, 2, 3, 4, -1, 0, 1, 0}, {2, 4}, DType::F64);
  const auto y = norm.forward(x).to_vector();
  const double r0 = 1 / std::sqrt(30.0 / 4 + 1e-6), r1 = 1 / std::sqrt(0.5 + 1e-6);
  EXPECT_NEAR(y[2], 3 * r0, 1e-14);
  EXPECT_NEAR(y[4], -r1, 1e-14);
}

TEST(NormModules, BadInput) {
  nn::LayerNorm ln(4);
  try {
    ln.forward(Tensor::zeros({2, 3}));
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("layer_norm"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[2, 3]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(nn::RMSNorm(4).forward(Tensor::zeros({4, 5})), ShapeError);
  EXPECT_THROW(nn::LayerNorm(4, 0.0), ValueError);
}

TEST(EmbeddingModule, ForwardGathersRows) {
  nn::Embedding emb(6, 3, 21);
  Tensor ids = Tensor::from_vector({5, 0, 2, 5}, {2, 2}, DType::I32);
  Tensor y = emb.forward(ids);
  ASSERT_EQ(y.shape(), (Shape{2, 2, 3}));
  const auto table = emb.weight().to_vector(), yv = y.to_vector();
  const int rows[] = {5, 0, 2, 5};
  for (int i = 0; i < 4; ++i)
    for (int c = 0; c < 3; ++c) EXPECT_EQ(yv[i * 3 + c], table[rows[i] * 3 + c]);
  EXPECT_EQ(nn::Embedding(6, 3, 21).weight().to_vector(), table) << "same seed, same table";
  EXPECT_THROW(emb.forward(Tensor::from_vector({6}, {1}, DType::I32)), ValueError);
}

}  // namespace
}  // namespace strand
