// nn::MultiHeadAttention, nn::CrossAttention, nn::Mlp and parallel::attention: outputs against a
// direct computation through the materialised reference attention, causal forms of every mask
// pattern, float64 gradient checks of inputs and parameters, parameter names and shapes, errors.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "framework/core/error.h"
#include "framework/nn/attention.h"
#include "framework/nn/mlp.h"
#include "framework/ops/attention.h"
#include "framework/ops/attention_reference.h"
#include "framework/ops/elementwise.h"
#include "framework/ops/join.h"
#include "framework/ops/linear_attention.h"
#include "framework/ops/matmul.h"
#include "framework/ops/rope.h"
#include "framework/ops/view.h"
#include "parallel/attention.h"
#include "support/gradcheck.h"
#include "support/tolerance.h"

namespace strand {
namespace {

using V = std::vector<Tensor>;
constexpr double kEps64 = testing::kEpsF64;

Tensor positions(int64_t n, int64_t offset = 0) {
  std::vector<double> p;
  for (int64_t i = 0; i < n; ++i) p.push_back(static_cast<double>(i + offset));
  return Tensor::from_vector(p, {n}, DType::I32);
}

// Module parameters get random (not GPT-2-small) values so every path carries weight.
template <class M>
void randomise(M& module, uint64_t seed) {
  for (auto& [name, p] : module.named_parameters()) {
    Tensor t = p;
    t.copy_from(Tensor::uniform(t.shape(), seed++, -0.5, 0.5, t.dtype()));
  }
}

Tensor linear(const Tensor& x, const nn::Module& m, const std::string& prefix) {
  return ops::add(ops::matmul(x, m.parameter(prefix + ".weight")), m.parameter(prefix + ".bias"));
}

// [B, T, H*D] -> contiguous [B, H, T, D].
Tensor heads(const Tensor& x, int64_t h) {
  return ops::contiguous(ops::transpose(ops::reshape(x, {x.size(0), x.size(1), h, x.size(2) / h}), 1, 2));
}

Tensor merge(const Tensor& o) {
  return ops::reshape(ops::contiguous(ops::transpose(o, 1, 2)), {o.size(0), o.size(2), o.size(1) * o.size(3)});
}

// The self-attention module's output computed directly: dense reference attention with the dense
// mask `dense` ([B, 1, T, T] int32) or, undefined, the module's own spec.
Tensor direct_self_attention(const nn::MultiHeadAttention& m, const Tensor& x, const Tensor& pos, const Tensor& dense) {
  const int64_t C = x.size(2), H = m.n_head(), Hkv = m.n_kv_head(), D = m.head_dim();
  const auto parts = ops::split(linear(x, m, "c_attn"), {H * D, Hkv * D, Hkv * D}, -1);
  Tensor q = heads(parts[0], H), k = heads(parts[1], Hkv), v = heads(parts[2], Hkv);
  if (m.options().rope) {
    q = ops::rope(q, pos, m.options().rope_base);
    k = ops::rope(k, pos, m.options().rope_base);
  }
  const Tensor mask = dense.defined() ? dense : ops::dense_mask(m.options().mask, x.size(0), x.size(1), x.size(1));
  Tensor o = ops::attention_reference(q, k, v, mask).o;
  (void)C;
  return linear(merge(o), m, "c_proj");
}

// dense [B, 1, T, T] of `mask` AND k <= q.
Tensor causal_dense(const MaskSpec& mask, int64_t b, int64_t t) {
  auto d = ops::dense_mask(mask, b, t, t).to_vector();
  for (int64_t r = 0; r < b; ++r)
    for (int64_t q = 0; q < t; ++q)
      for (int64_t k = q + 1; k < t; ++k) d[static_cast<size_t>((r * t + q) * t + k)] = 0;
  return Tensor::from_vector(d, {b, 1, t, t}, DType::I32);
}

nn::AttentionOptions f64_options() {
  nn::AttentionOptions o;
  o.dtype = DType::F64;
  o.seed = 3;
  return o;
}

TEST(MultiHeadAttention, ParameterNamesAndShapes) {
  nn::AttentionOptions o;
  o.n_kv_head = 2;
  nn::MultiHeadAttention mha(16, 4, o);
  const auto named = mha.named_parameters();
  ASSERT_EQ(named.size(), 4u);
  EXPECT_EQ(named[0].first, "c_attn.weight");
  EXPECT_EQ(named[0].second.shape(), (Shape{16, (4 + 2 * 2) * 4}));
  EXPECT_EQ(named[1].first, "c_attn.bias");
  EXPECT_EQ(named[1].second.shape(), (Shape{32}));
  EXPECT_EQ(named[2].first, "c_proj.weight");
  EXPECT_EQ(named[2].second.shape(), (Shape{16, 16}));
  EXPECT_EQ(named[3].first, "c_proj.bias");
  nn::MultiHeadAttention mha_full(12, 3);
  EXPECT_EQ(mha_full.parameter("c_attn.weight").shape(), (Shape{12, 36}));  // GPT-2's [C, 3C]

  o.linear = true;
  nn::MultiHeadAttention lin(16, 4, o);
  EXPECT_EQ(lin.named_parameters().size(), 4u);  // the projection is a buffer, not a parameter
  const auto buffers = lin.named_buffers();
  ASSERT_EQ(buffers.size(), 1u);
  EXPECT_EQ(buffers[0].first, "performer_projection");
  EXPECT_EQ(buffers[0].second.shape(), (Shape{6, 4}));  // M = max(D, round(D ln D)) = round(4 ln 4) = 6
}

TEST(MultiHeadAttention, MatchesDirectComputationForEveryPattern) {
  const int64_t B = 2, T = 11, C = 12;
  MaskSpec lf = MaskSpec::sliding(2, 0);
  lf.kind = MaskKind::Longformer;
  lf.global_tokens = {0, 1};
  MaskSpec dil = MaskSpec::sliding(4, 0);
  dil.kind = MaskKind::Dilated;
  dil.dilation = 2;
  struct Case {
    const char* name;
    MaskSpec mask;
    bool causal, rope;
    int64_t n_kv_head;
  };
  MaskSpec bb = MaskSpec::sliding(1, 1);
  bb.kind = MaskKind::BigBird;
  bb.global_tokens = {0};
  bb.block_size = 3;
  bb.random_blocks = 1;
  bb.seed = 5;
  MaskSpec lf_bidir = lf;
  lf_bidir.window_right = 2;
  const std::vector<Case> cases = {
      {"full", MaskSpec{}, false, false, 0},
      {"causal from None", MaskSpec{}, true, false, 0},
      {"causal gqa rope", MaskSpec::causal_mask(), true, true, 1},
      {"sliding causal", MaskSpec::sliding(3, 0), true, true, 3},
      {"dilated causal", dil, true, false, 0},
      {"longformer causal", lf, true, true, 0},
      {"bigbird causal", bb, true, false, 0},
      {"sliding both sides made causal", MaskSpec::sliding(3, 3), true, false, 1},
      {"longformer bidirectional", lf_bidir, false, false, 0},
      {"bigbird bidirectional", bb, false, true, 1},
  };
  const Tensor x = Tensor::uniform({B, T, C}, 1, -1, 1, DType::F64);
  const Tensor pos = positions(T, 5);
  for (const Case& c : cases) {
    nn::AttentionOptions o = f64_options();
    o.mask = c.mask;
    o.mask.causal = c.causal;
    o.rope = c.rope;
    o.n_kv_head = c.n_kv_head;
    nn::MultiHeadAttention mha(C, 3, o);
    randomise(mha, 20);
    const Tensor dense = c.causal ? causal_dense(c.mask, B, T) : Tensor();
    const Tensor want = direct_self_attention(mha, x, pos, dense);
    const Tensor got = mha.forward(x, pos);
    // Both paths sum the same O(T + C) products in float64; a few hundred eps covers reordering.
    EXPECT_LE(testing::max_abs_diff(got, want), 256 * kEps64 * (1 + std::abs(want.to_vector()[0]))) << c.name;
  }
}

TEST(MultiHeadAttention, CausalModulesNeverReadLaterTokens) {
  const int64_t T = 10, C = 8;
  MaskSpec bb = MaskSpec::sliding(2, 2);
  bb.kind = MaskKind::BigBird;
  bb.global_tokens = {0, 1, 2};
  bb.block_size = 2;
  bb.random_blocks = 2;
  bb.seed = 9;
  for (bool linear : {false, true}) {
    nn::AttentionOptions o = f64_options();
    o.linear = linear;
    o.mask = bb;
    o.mask.causal = true;
    nn::MultiHeadAttention mha(C, 2, o);
    randomise(mha, 40);
    const Tensor x = Tensor::uniform({1, T, C}, 2, -1, 1, DType::F64);
    const auto base = mha.forward(x, positions(T)).to_vector();
    for (int64_t j = 0; j < T; ++j) {
      Tensor x2 = x.copy_as(DType::F64, Device::cpu());
      x2.data<double>()[j * C] += 1.0;  // change token j
      const auto changed = mha.forward(x2, positions(T)).to_vector();
      for (int64_t t = 0; t < j; ++t)
        for (int64_t c = 0; c < C; ++c) {
          // Softmax attention never touches a later key: bitwise equal. Causal Performer's key
          // stabiliser is a max over the whole key slice (Note [Performer stabilisers]); it cancels
          // exactly in the math, so earlier rows move only by rounding.
          const double tol = linear ? 64 * kEps64 * (1 + std::abs(base[t * C + c])) : 0.0;
          ASSERT_NEAR(changed[t * C + c], base[t * C + c], tol)
              << (linear ? "linear" : "bigbird") << ": token " << j << " changed output " << t;
        }
      EXPECT_NE(changed[j * C], base[j * C]);
    }
  }
}

TEST(MultiHeadAttention, LinearAttentionMatchesThePerformerOp) {
  const int64_t B = 2, T = 7, C = 8, H = 2;
  for (bool causal : {false, true}) {
    nn::AttentionOptions o = f64_options();
    o.linear = true;
    o.mask.causal = causal;
    o.n_kv_head = 1;
    nn::MultiHeadAttention mha(C, H, o);
    randomise(mha, 60);
    const Tensor x = Tensor::uniform({B, T, C}, 4, -1, 1, DType::F64);
    const auto parts = ops::split(linear(x, mha, "c_attn"), {H * 4, 4, 4}, -1);
    const Tensor proj = mha.named_buffers()[0].second;
    const Tensor o_direct = ops::linear_attention(heads(parts[0], H), heads(parts[1], 1), heads(parts[2], 1), proj, causal);
    const Tensor want = linear(merge(o_direct), mha, "c_proj");
    EXPECT_LE(testing::max_abs_diff(mha.forward(x, positions(T)), want), 64 * kEps64) << "causal " << causal;
  }
}

TEST(MultiHeadAttention, GradientsMatchFiniteDifferences) {
  MaskSpec lf = MaskSpec::sliding(1, 0);
  lf.kind = MaskKind::Longformer;
  lf.global_tokens = {0};
  for (int variant = 0; variant < 3; ++variant) {
    nn::AttentionOptions o = f64_options();
    o.rope = variant != 1;
    o.linear = variant == 2;
    o.mask = variant == 1 ? lf : MaskSpec{};
    o.mask.causal = true;
    o.n_kv_head = variant == 0 ? 1 : 0;
    nn::MultiHeadAttention mha(4, 2, o);
    randomise(mha, 80);
    Tensor x = Tensor::uniform({1, 5, 4}, 5, -1, 1, DType::F64);
    x.set_requires_grad(true);
    std::vector<Tensor> inputs = {x};
    for (const Tensor& p : mha.parameters()) inputs.push_back(p);
    const Tensor pos = positions(5, 2);
    testing::expect_gradients_match([&](const V& in) { return mha.forward(in[0], pos); }, inputs,
                                    "multi_head_attention variant " + std::to_string(variant));
  }
}

TEST(MultiHeadAttention, CausalFormsAndBadInputs) {
  // A causal module keeps its mask as given: causal is the mask's own flag, on any kind.
  MaskSpec bb;
  bb.kind = MaskKind::BigBird;
  bb.causal = true;
  nn::AttentionOptions causal_bb;
  causal_bb.mask = bb;
  const nn::MultiHeadAttention causal_module(8, 2, causal_bb);
  EXPECT_TRUE(causal_module.options().mask.causal);
  EXPECT_EQ(causal_module.options().mask.kind, MaskKind::BigBird);
  EXPECT_THROW(nn::MultiHeadAttention(8, 3), ValueError);     // 3 heads do not divide 8
  nn::AttentionOptions gqa;
  gqa.n_kv_head = 3;
  EXPECT_THROW(nn::MultiHeadAttention(12, 4, gqa), ValueError);
  nn::MultiHeadAttention mha(8, 2);
  try {
    mha.forward(Tensor::zeros({2, 3, 6}), positions(3));
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("multi_head_attention"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[2, 3, 6]"), std::string::npos) << e.what();
  }
}

TEST(CrossAttention, MatchesDirectComputationAndGradients) {
  const int64_t B = 2, Tq = 4, Tk = 6, C = 8, H = 2;
  nn::AttentionOptions o = f64_options();
  o.n_kv_head = 1;
  nn::CrossAttention cross(C, H, o);
  randomise(cross, 100);
  const auto names = cross.named_parameters();
  ASSERT_EQ(names.size(), 6u);
  EXPECT_EQ(names[0].first, "q_attn.weight");
  EXPECT_EQ(names[0].second.shape(), (Shape{C, C}));
  EXPECT_EQ(names[2].first, "c_attn.weight");
  EXPECT_EQ(names[2].second.shape(), (Shape{C, 2 * 4}));
  EXPECT_EQ(names[4].first, "c_proj.weight");

  Tensor x = Tensor::uniform({B, Tq, C}, 6, -1, 1, DType::F64);
  Tensor mem = Tensor::uniform({B, Tk, C}, 7, -1, 1, DType::F64);
  const auto kv = ops::split(linear(mem, cross, "c_attn"), {4, 4}, -1);
  const Tensor o_ref = ops::attention_reference(heads(linear(x, cross, "q_attn"), H), heads(kv[0], 1), heads(kv[1], 1)).o;
  const Tensor want = linear(merge(o_ref), cross, "c_proj");
  EXPECT_LE(testing::max_abs_diff(cross.forward(x, mem), want), 64 * kEps64);

  x.set_requires_grad(true);
  mem.set_requires_grad(true);
  std::vector<Tensor> inputs = {x, mem};
  for (const Tensor& p : cross.parameters()) inputs.push_back(p);
  testing::expect_gradients_match([&](const V& in) { return cross.forward(in[0], in[1]); }, inputs, "cross_attention");
  EXPECT_THROW(cross.forward(x, Tensor::zeros({3, Tk, C}, DType::F64)), ShapeError);
}

TEST(Mlp, GeluAndSwigluMatchDirectComputationAndGradients) {
  for (bool swiglu : {false, true}) {
    nn::MlpOptions o;
    o.swiglu = swiglu;
    o.dtype = DType::F64;
    nn::Mlp mlp(4, 6, o);
    randomise(mlp, 120);
    EXPECT_EQ(mlp.parameter("c_fc.weight").shape(), (Shape{4, swiglu ? 12 : 6}));
    EXPECT_EQ(mlp.parameter("c_proj.weight").shape(), (Shape{6, 4}));
    Tensor x = Tensor::uniform({2, 3, 4}, 8, -1, 1, DType::F64);
    Tensor h = linear(x, mlp, "c_fc");
    if (swiglu) {
      // silu(g) = g / (1 + e^-g), written out here rather than through ops::silu.
      const auto parts = ops::split(h, {6, 6}, -1);
      const Tensor g = ops::contiguous(parts[0]);
      const Tensor silu = ops::div(g, ops::add_scalar(ops::exp(ops::neg(g)), 1.0));
      h = ops::mul(silu, parts[1]);
    } else {
      h = ops::gelu(h);
    }
    const Tensor want = linear(h, mlp, "c_proj");
    EXPECT_LE(testing::max_abs_diff(mlp.forward(x), want), 64 * kEps64);
    x.set_requires_grad(true);
    std::vector<Tensor> inputs = {x};
    for (const Tensor& p : mlp.parameters()) inputs.push_back(p);
    testing::expect_gradients_match([&](const V& in) { return mlp.forward(in[0]); }, inputs,
                                    swiglu ? "mlp swiglu" : "mlp gelu");
  }
  EXPECT_THROW(nn::Mlp(4, 0), ValueError);
  EXPECT_THROW(nn::Mlp(4, 8).forward(Tensor::zeros({2, 5})), ShapeError);
}

// A group that only answers size(): a one-rank group selects the local path. (The path over
// several ranks, ring attention, is tested under mpiexec in tests/parallel/ring_mpitest.cpp.)
class SizedGroup final : public parallel::Group {
 public:
  explicit SizedGroup(int n) : n_(n) {}
  int rank() const override { return 0; }
  int size() const override { return n_; }
  std::string backend() const override { return "test"; }
  std::unique_ptr<parallel::Request> isend(const Tensor&, int, int) override { throw Error("unused"); }
  std::unique_ptr<parallel::Request> irecv(Tensor&, int, int) override { throw Error("unused"); }
  void all_reduce(Tensor&, parallel::ReduceOp) override { throw Error("unused"); }
  std::unique_ptr<parallel::Request> iall_reduce(Tensor&, parallel::ReduceOp) override { throw Error("unused"); }
  void all_gather(const Tensor&, Tensor&) override { throw Error("unused"); }
  void reduce_scatter(const Tensor&, Tensor&, parallel::ReduceOp) override { throw Error("unused"); }
  void all_to_all(const Tensor&, Tensor&) override { throw Error("unused"); }
  void broadcast(Tensor&, int) override { throw Error("unused"); }
  void barrier() override {}
  void all_reduce(std::span<double>, parallel::ReduceOp) override { throw Error("unused"); }
  void all_reduce(std::span<int64_t>, parallel::ReduceOp) override { throw Error("unused"); }
  std::unique_ptr<parallel::Group> split(int, int) override { throw Error("unused"); }
  [[noreturn]] void abort(const std::string& m, int) override { throw Error(m); }

 private:
  int n_;
};

TEST(ParallelAttention, LocalIsTheFusedKernel) {
  const Tensor q = Tensor::uniform({1, 2, 5, 4}, 9, -1, 1, DType::F64);
  const Tensor k = Tensor::uniform({1, 1, 5, 4}, 10, -1, 1, DType::F64);
  const Tensor v = Tensor::uniform({1, 1, 5, 4}, 11, -1, 1, DType::F64);
  const auto want = ops::attention(q, k, v, MaskSpec::causal_mask());
  SizedGroup one(1);
  parallel::SequenceShard ring_of_one;
  ring_of_one.ring = &one;
  for (const parallel::SequenceShard& shard : {parallel::SequenceShard{}, ring_of_one}) {
    const auto got = parallel::attention(q, k, v, MaskSpec::causal_mask(), 0.0, shard);
    EXPECT_EQ(got.o.to_vector(), want.o.to_vector());
    EXPECT_EQ(got.lse.to_vector(), want.lse.to_vector());
  }
}

}  // namespace
}  // namespace strand
