// Fused attention: o, lse, dq, dk, dv against the materialised reference for every mask pattern x
// {MHA, GQA, MQA} x D in {16, 64, 80, 128} at sizes that are not tile multiples; float64 gradient
// checks per pattern; split keys merged equal the whole; empty rows; bfloat16; bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <functional>
#include <limits>
#include <string>
#include <tuple>

#include "framework/autograd/engine.h"
#include "framework/core/error.h"
#include "framework/ops/attention.h"
#include "framework/ops/attention_reference.h"
#include "framework/ops/elementwise.h"
#include "framework/ops/view.h"
#include "support/gradcheck.h"

namespace strand {
namespace {

using V = std::vector<Tensor>;

struct Pattern {
  std::string name;
  MaskSpec mask;
  int64_t nq, nk;
};

MaskSpec with_kind(MaskKind kind, int64_t left, int64_t right) {
  MaskSpec m;
  m.kind = kind;
  m.window_left = left;
  m.window_right = right;
  return m;
}

// Every pattern at 100 positions (two 64-tiles, the second one short), B = 2.
std::vector<Pattern> patterns() {
  std::vector<Pattern> ps;
  ps.push_back({"full", MaskSpec{}, 100, 100});
  ps.push_back({"causal", MaskSpec::causal_mask(), 100, 100});
  ps.push_back({"sliding causal w=37", MaskSpec::sliding(37), 100, 100});
  ps.push_back({"sliding symmetric 20/20", MaskSpec::sliding(20, 20), 100, 100});
  MaskSpec dil = with_kind(MaskKind::Dilated, 60, 9);
  dil.dilation = 3;
  ps.push_back({"dilated 60/9 d=3", dil, 100, 100});
  MaskSpec lf = with_kind(MaskKind::Longformer, 16, 16);
  lf.global_tokens = {0, 77, 5, 99};
  ps.push_back({"longformer", lf, 100, 100});
  MaskSpec bb = with_kind(MaskKind::BigBird, 8, 8);
  bb.global_tokens = {0, 90};
  bb.block_size = 16;
  bb.random_blocks = 2;
  bb.seed = 42;
  ps.push_back({"bigbird", bb, 100, 100});
  MaskSpec bb_causal = bb;
  bb_causal.causal = true;
  ps.push_back({"bigbird causal", bb_causal, 100, 100});
  MaskSpec pad;
  pad.key_lengths = {100, 70};
  ps.push_back({"key padding", pad, 100, 100});
  MaskSpec packed = MaskSpec::causal_mask();
  packed.cu_seqlens = {{0, 40, 41, 77, 100}};
  ps.push_back({"packed causal", packed, 100, 100});
  MaskSpec packed_rows;
  packed_rows.cu_seqlens = {{0, 60, 100}, {0, 10, 100}};
  ps.push_back({"packed per row", packed_rows, 100, 100});
  MaskSpec off = MaskSpec::causal_mask();
  off.q_offset = 200;
  off.k_offset = 150;
  off.seq_len = 400;
  ps.push_back({"causal with offsets", off, 100, 100});
  ps.push_back({"cross", MaskSpec{}, 57, 100});
  MaskSpec cross_pad;
  cross_pad.key_lengths = {50, 100};
  ps.push_back({"cross with padding", cross_pad, 57, 100});
  return ps;
}

struct Result {
  Tensor o, lse, dq, dk, dv;
};

// o, lse and the gradients of sum(o * go) + sum(lse * glse) with respect to q, k, v.
template <class Fn>
Result run(Fn&& fn, const Tensor& q0, const Tensor& k0, const Tensor& v0, const Tensor& go, const Tensor& glse) {
  Tensor q = q0.detach(), k = k0.detach(), v = v0.detach();
  for (Tensor* t : {&q, &k, &v}) t->set_requires_grad(true);
  ops::AttentionOutput out = fn(q, k, v);
  V g = autograd::grad({out.o, out.lse}, {go, glse}, {q, k, v});
  return {out.o, out.lse, g[0], g[1], g[2]};
}

// |got - ref| <= atol + rtol |ref| with atol = terms * eps * max|ref| and rtol = terms * eps + extra:
// the rounding bound of sums of `terms` products in precision eps (plus `extra`, the relative
// rounding of a narrower output type). Infinite references (empty rows) must match exactly.
void expect_close(const Tensor& got, const Tensor& ref, double terms, double eps, double extra,
                  const std::string& label) {
  ASSERT_EQ(got.shape(), ref.shape()) << label;
  const auto g = got.to_vector(), r = ref.to_vector();
  double mx = 0;
  for (double x : r)
    if (std::isfinite(x)) mx = std::max(mx, std::abs(x));
  const double atol = terms * eps * mx, rtol = terms * eps + extra;
  for (size_t i = 0; i < r.size(); ++i) {
    if (!std::isfinite(r[i])) {
      ASSERT_EQ(g[i], r[i]) << label << " element " << i;
      continue;
    }
    ASSERT_LE(std::abs(g[i] - r[i]), atol + rtol * std::abs(r[i]))
        << label << " element " << i << ": got " << g[i] << ", reference " << r[i];
  }
}

// The float64 reference on the same (rounded) inputs, with the dense mask of the spec.
Result reference(const Pattern& pt, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& go,
                 const Tensor& glse) {
  const Tensor mask = ops::dense_mask(pt.mask, q.shape()[0], pt.nq, pt.nk);
  auto f64 = [](const Tensor& t) { return t.copy_as(DType::F64, t.device()); };
  return run([&](const Tensor& a, const Tensor& b, const Tensor& c) { return ops::attention_reference(a, b, c, mask); },
             f64(q), f64(k), f64(v), f64(go), f64(glse));
}

void check_against_reference(const Pattern& pt, int64_t hq, int64_t hkv, int64_t d, DType dt, uint64_t seed) {
  const int64_t b = 2;
  auto draw = [&](const Shape& s, uint64_t sd) { return Tensor::uniform(s, sd, -1.0, 1.0, DType::F64).copy_as(dt, Device::cpu()); };
  Tensor q = draw({b, hq, pt.nq, d}, seed), k = draw({b, hkv, pt.nk, d}, seed + 1), v = draw({b, hkv, pt.nk, d}, seed + 2);
  Tensor go = draw({b, hq, pt.nq, d}, seed + 3);
  Tensor glse = Tensor::uniform({b, hq, pt.nq}, seed + 4, -1.0, 1.0, DType::F64)
                    .copy_as(dt == DType::F64 ? DType::F64 : DType::F32, Device::cpu());
  const Result got =
      run([&](const Tensor& a, const Tensor& bb, const Tensor& c) { return ops::attention(a, bb, c, pt.mask); }, q, k,
          v, go, glse);
  const Result ref = reference(pt, q, k, v, go, glse);
  const double eps = dt == DType::F64 ? std::numeric_limits<double>::epsilon() : std::numeric_limits<float>::epsilon();
  const double out_round = dt == DType::BF16 ? 0x1.0p-7 : 0.0;  // o and the gradients come back in bfloat16
  const double fwd_terms = static_cast<double>(d + pt.nk);
  const double bwd_terms = 2.0 * static_cast<double>(d + pt.nk + pt.nq * (hq / hkv));
  const std::string label = pt.name + " Hq=" + std::to_string(hq) + " Hkv=" + std::to_string(hkv) +
                            " D=" + std::to_string(d) + " " + dtype_name(dt);
  expect_close(got.o, ref.o, fwd_terms, eps, out_round, label + " o");
  expect_close(got.lse, ref.lse, fwd_terms, eps, 0.0, label + " lse");
  expect_close(got.dq, ref.dq, bwd_terms, eps, out_round, label + " dq");
  expect_close(got.dk, ref.dk, bwd_terms, eps, out_round, label + " dk");
  expect_close(got.dv, ref.dv, bwd_terms, eps, out_round, label + " dv");
}

TEST(Attention, EveryPatternHeadLayoutAndHeadDimMatchesReference) {
  uint64_t seed = 100;
  for (const Pattern& pt : patterns())
    for (auto [hq, hkv] : {std::pair<int64_t, int64_t>{4, 4}, {4, 2}, {4, 1}})
      for (int64_t d : {16, 64, 80, 128}) {
        check_against_reference(pt, hq, hkv, d, DType::F32, seed += 5);
        if (HasFatalFailure()) return;
      }
}

TEST(Attention, Float64MatchesReferenceToDoublePrecision) {
  for (const Pattern& pt : patterns()) {
    check_against_reference(pt, 4, 2, 24, DType::F64, 7);
    if (HasFatalFailure()) return;
  }
}

TEST(Attention, Bfloat16ComputesInFloat32) {
  // The generic bf16 path: the float32 kernels on the widened inputs. The AVX512-BF16 tiles,
  // which round P and dS to bf16 as well, have their own bounds in attention_bf16_test.cpp.
  setenv("STRAND_ATTENTION_ISA", "generic", 1);
  struct Restore {
    ~Restore() { unsetenv("STRAND_ATTENTION_ISA"); }
  } restore;
  const std::vector<Pattern> ps = patterns();
  for (size_t i : {size_t{1}, size_t{6}, size_t{9}}) {  // causal, bigbird, packed causal
    check_against_reference(ps[i], 4, 2, 64, DType::BF16, 9);
    if (HasFatalFailure()) return;
  }
  Tensor q = Tensor::zeros({1, 2, 5, 8}, DType::BF16);
  ops::AttentionOutput out = ops::attention(q, q, q, MaskSpec::causal_mask());
  EXPECT_EQ(out.o.dtype(), DType::BF16);
  EXPECT_EQ(out.lse.dtype(), DType::F32);
}

// Small shapes for finite differences; no pattern leaves a row without keys (its lse is -inf).
std::vector<Pattern> small_patterns() {
  std::vector<Pattern> ps;
  ps.push_back({"full", MaskSpec{}, 10, 10});
  ps.push_back({"causal", MaskSpec::causal_mask(), 10, 10});
  ps.push_back({"sliding", MaskSpec::sliding(3), 10, 10});
  ps.push_back({"sliding symmetric", MaskSpec::sliding(2, 2), 10, 10});
  MaskSpec dil = with_kind(MaskKind::Dilated, 6, 0);
  dil.dilation = 2;
  ps.push_back({"dilated", dil, 10, 10});
  MaskSpec lf = with_kind(MaskKind::Longformer, 1, 1);
  lf.global_tokens = {0, 7};
  ps.push_back({"longformer", lf, 10, 10});
  MaskSpec bb = with_kind(MaskKind::BigBird, 1, 1);
  bb.global_tokens = {3};
  bb.block_size = 3;
  bb.random_blocks = 1;
  bb.seed = 5;
  ps.push_back({"bigbird", bb, 10, 10});
  bb.causal = true;
  ps.push_back({"bigbird causal", bb, 10, 10});
  MaskSpec pad;
  pad.key_lengths = {10, 6};
  ps.push_back({"key padding", pad, 10, 10});
  MaskSpec packed = MaskSpec::causal_mask();
  packed.cu_seqlens = {{0, 4, 10}};
  ps.push_back({"packed causal", packed, 10, 10});
  MaskSpec off = MaskSpec::causal_mask();
  off.q_offset = 5;
  off.k_offset = 2;
  off.seq_len = 16;
  ps.push_back({"causal with offsets", off, 10, 10});
  ps.push_back({"cross", MaskSpec{}, 7, 10});
  return ps;
}

TEST(Attention, GradientsMatchFiniteDifferencesForEveryPattern) {
  for (const Pattern& pt : small_patterns()) {
    testing::OpCase c{"attention " + pt.name,
                      {{2, 2, pt.nq, 3}, {2, 1, pt.nk, 3}, {2, 1, pt.nk, 3}},
                      [mask = pt.mask](const V& x) {
                        ops::AttentionOutput out = ops::attention(x[0], x[1], x[2], mask);
                        return ops::add(out.o, ops::unsqueeze(out.lse, -1));  // both outputs feed the loss
                      }};
    testing::run_op_case(c);
    if (HasFatalFailure()) return;
  }
}

// The layout models use: q, k, v come from a [B, N, H, D] projection viewed as [B, H, N, D], and
// the output goes back to [B, N, H, D], so dO arrives as a head-transposed view too (row stride
// H * D, head stride D). Each kernel stride path, forward and backward, against finite differences.
TEST(Attention, HeadTransposedGradientsMatchFiniteDifferencesForEveryPattern) {
  for (const Pattern& pt : small_patterns()) {
    testing::OpCase c{"attention head-transposed " + pt.name,
                      {{2, pt.nq, 2, 3}, {2, pt.nk, 1, 3}, {2, pt.nk, 1, 3}},
                      [mask = pt.mask](const V& x) {
                        const Tensor q = ops::transpose(x[0], 1, 2), k = ops::transpose(x[1], 1, 2);
                        const Tensor v = ops::transpose(x[2], 1, 2);
                        ops::AttentionOutput out = ops::attention(q, k, v, mask);
                        return ops::transpose(ops::add(out.o, ops::unsqueeze(out.lse, -1)), 1, 2);
                      }};
    testing::run_op_case(c);
    if (HasFatalFailure()) return;
  }
}

TEST(Attention, MergeGradientsMatchFiniteDifferences) {
  testing::OpCase c{"merge_attention",
                    {{2, 3, 4}, {2, 3}, {2, 3, 4}, {2, 3}},
                    [](const V& x) {
                      ops::AttentionOutput m = ops::merge_attention(x[0], x[1], x[2], x[3]);
                      return ops::add(m.o, ops::unsqueeze(m.lse, -1));
                    },
                    -2.0, 2.0};
  testing::run_op_case(c);
}

// Keys cut in two at a non-tile position, each part computed with its global key offset, merged:
// o, lse and every gradient (through the merge's backward and lse's gradient) equal the whole.
TEST(Attention, SplitKeysMergedEqualTheWhole) {
  const double eps = std::numeric_limits<double>::epsilon();
  for (const Pattern& pt : patterns()) {
    const int64_t b = 2, hq = 4, hkv = 2, d = 16, cut = 45;
    Tensor q = Tensor::uniform({b, hq, pt.nq, d}, 1, -1, 1, DType::F64);
    Tensor k = Tensor::uniform({b, hkv, pt.nk, d}, 2, -1, 1, DType::F64);
    Tensor v = Tensor::uniform({b, hkv, pt.nk, d}, 3, -1, 1, DType::F64);
    Tensor go = Tensor::uniform({b, hq, pt.nq, d}, 4, -1, 1, DType::F64);
    Tensor glse = Tensor::uniform({b, hq, pt.nq}, 5, -1, 1, DType::F64);
    MaskSpec whole = pt.mask;
    whole.seq_len = std::max(whole.seq_len, std::max(whole.q_offset + pt.nq, whole.k_offset + pt.nk));
    MaskSpec first = whole, second = whole;
    second.k_offset = whole.k_offset + cut;
    const Result ref = run([&](const Tensor& a, const Tensor& bb, const Tensor& c) { return ops::attention(a, bb, c, whole); },
                           q, k, v, go, glse);
    const Result got = run(
        [&](const Tensor& a, const Tensor& bb, const Tensor& c) {
          ops::AttentionOutput p1 = ops::attention(a, ops::slice(bb, 2, 0, cut), ops::slice(c, 2, 0, cut), first);
          ops::AttentionOutput p2 =
              ops::attention(a, ops::slice(bb, 2, cut, pt.nk), ops::slice(c, 2, cut, pt.nk), second);
          return ops::merge_attention(p1.o, p1.lse, p2.o, p2.lse);
        },
        q, k, v, go, glse);
    const double terms = 4.0 * static_cast<double>(d + pt.nk + pt.nq * 2);
    for (auto [g, r, name] : {std::tuple{got.o, ref.o, "o"}, {got.lse, ref.lse, "lse"}, {got.dq, ref.dq, "dq"},
                              {got.dk, ref.dk, "dk"}, {got.dv, ref.dv, "dv"}})
      expect_close(g, r, terms, eps, 0.0, pt.name + " split " + name);
    if (HasFatalFailure()) return;
  }
}

TEST(Attention, MergeOfTwoEmptyPartsIsEmptyNotNan) {
  const double inf = std::numeric_limits<double>::infinity();
  Tensor o1 = Tensor::zeros({1, 2, 3}), o2 = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {1, 2, 3});
  Tensor l1 = Tensor::from_vector({-inf, -inf}, {1, 2}), l2 = Tensor::from_vector({-inf, 0.5}, {1, 2});
  for (Tensor* t : {&o1, &o2, &l1, &l2}) t->set_requires_grad(true);
  ops::AttentionOutput m = ops::merge_attention(o1, l1, o2, l2);
  EXPECT_EQ(m.o.to_vector(), (std::vector<double>{0, 0, 0, 4, 5, 6}));
  EXPECT_EQ(m.lse.to_vector()[0], -inf);
  EXPECT_FLOAT_EQ(static_cast<float>(m.lse.to_vector()[1]), 0.5f);
  V g = autograd::grad({m.o, m.lse}, {Tensor::ones({1, 2, 3}), Tensor::ones({1, 2})}, {o1, l1, o2, l2});
  for (const Tensor& t : g)
    for (double x : t.to_vector()) EXPECT_TRUE(std::isfinite(x));
  EXPECT_EQ(g[1].to_vector(), (std::vector<double>{0, 0}));  // an empty part gets no gradient
}

// A row with no key to attend: o = 0, lse = -inf, zero gradients, nothing NaN.
TEST(Attention, FullyMaskedRowsGiveZeroOutputAndGradients) {
  MaskSpec pad;
  pad.key_lengths = {0, 70};  // batch row 0 has no keys at all
  MaskSpec before = MaskSpec::causal_mask();
  before.q_offset = 0;
  before.k_offset = 40;  // queries 0..39 come before every key
  for (const MaskSpec& mask : {pad, before}) {
    Tensor q = Tensor::uniform({2, 2, 90, 16}, 1, -1, 1), k = Tensor::uniform({2, 1, 80, 16}, 2, -1, 1);
    Tensor v = Tensor::uniform({2, 1, 80, 16}, 3, -1, 1);
    const Result r = run([&](const Tensor& a, const Tensor& b, const Tensor& c) { return ops::attention(a, b, c, mask); },
                         q, k, v, Tensor::ones({2, 2, 90, 16}), Tensor::ones({2, 2, 90}));
    const auto o = r.o.to_vector(), lse = r.lse.to_vector(), dq = r.dq.to_vector();
    const bool by_batch = !mask.key_lengths.empty();
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t h = 0; h < 2; ++h)
        for (int64_t i = 0; i < 90; ++i) {
          const bool empty = by_batch ? b == 0 : i < 40;
          const size_t row = static_cast<size_t>((b * 2 + h) * 90 + i);
          if (!empty) {
            ASSERT_TRUE(std::isfinite(lse[row]));
            continue;
          }
          ASSERT_EQ(lse[row], -std::numeric_limits<double>::infinity());
          for (int64_t x = 0; x < 16; ++x) {
            ASSERT_EQ(o[row * 16 + x], 0.0);
            ASSERT_EQ(dq[row * 16 + x], 0.0);
          }
        }
    for (const Tensor& t : {r.dk, r.dv})
      for (double x : t.to_vector()) ASSERT_TRUE(std::isfinite(x));
    if (by_batch) {  // batch row 0's keys are all padding: no gradient reaches them
      const auto dk = r.dk.to_vector();
      for (size_t i = 0; i < dk.size() / 2; ++i) ASSERT_EQ(dk[i], 0.0);
    }
  }
}

TEST(Attention, BackwardIsBitwiseReproducible) {
  Tensor q = Tensor::uniform({1, 4, 200, 64}, 1, -1, 1), k = Tensor::uniform({1, 1, 200, 64}, 2, -1, 1);
  Tensor v = Tensor::uniform({1, 1, 200, 64}, 3, -1, 1), go = Tensor::uniform({1, 4, 200, 64}, 4, -1, 1);
  auto once = [&] {
    return run([&](const Tensor& a, const Tensor& b, const Tensor& c) { return ops::attention(a, b, c, MaskSpec::causal_mask()); },
               q, k, v, go, Tensor::zeros({1, 4, 200}));
  };
  const Result a = once(), b = once();
  EXPECT_EQ(a.dq.to_vector(), b.dq.to_vector());
  EXPECT_EQ(a.dk.to_vector(), b.dk.to_vector());
  EXPECT_EQ(a.dv.to_vector(), b.dv.to_vector());
}

TEST(Attention, ReadsHeadTransposedViewsInPlace) {
  // [B, N, H, D] as produced by a QKV projection, viewed as [B, H, N, D]: same result as a copy.
  Tensor x = Tensor::uniform({2, 33, 4, 16}, 1, -1, 1);
  Tensor view = ops::transpose(x, 1, 2), copy = ops::contiguous(view);
  ops::AttentionOutput a = ops::attention(view, view, view, MaskSpec::causal_mask());
  ops::AttentionOutput b = ops::attention(copy, copy, copy, MaskSpec::causal_mask());
  EXPECT_EQ(a.o.to_vector(), b.o.to_vector());
  EXPECT_EQ(a.lse.to_vector(), b.lse.to_vector());
}

TEST(Attention, HeadTransposedGradientsEqualThoseOfContiguousCopies) {
  // q, k, v and dO all [B, N, H, D] viewed as [B, H, N, D] (GQA, sizes crossing tile borders):
  // the kernels read them through their strides, so every output and gradient equals, bit for
  // bit, the result of contiguous copies.
  auto heads_view = [](const Shape& s, uint64_t seed) {
    return ops::transpose(Tensor::uniform(s, seed, -1, 1), 1, 2);
  };
  const Tensor q = heads_view({2, 97, 4, 16}, 1), k = heads_view({2, 97, 2, 16}, 2), v = heads_view({2, 97, 2, 16}, 3);
  const Tensor go = heads_view({2, 97, 4, 16}, 4), glse = Tensor::uniform({2, 4, 97}, 5, -1, 1);
  ASSERT_FALSE(go.is_contiguous());
  for (const MaskSpec& mask : {MaskSpec::causal_mask(), MaskSpec::sliding(20, 5), MaskSpec{}}) {
    auto call = [&](const Tensor& a, const Tensor& b, const Tensor& c) { return ops::attention(a, b, c, mask); };
    const Result strided = run(call, q, k, v, go, glse);
    const Result copied = run(call, ops::contiguous(q), ops::contiguous(k), ops::contiguous(v), ops::contiguous(go), glse);
    EXPECT_EQ(strided.o.to_vector(), copied.o.to_vector());
    EXPECT_EQ(strided.lse.to_vector(), copied.lse.to_vector());
    EXPECT_EQ(strided.dq.to_vector(), copied.dq.to_vector());
    EXPECT_EQ(strided.dk.to_vector(), copied.dk.to_vector());
    EXPECT_EQ(strided.dv.to_vector(), copied.dv.to_vector());
  }
}

template <class E>
void expect_error(const std::function<void()>& f, const std::vector<std::string>& words) {
  try {
    f();
    FAIL() << "expected an error mentioning " << words[0];
  } catch (const E& e) {
    for (const std::string& w : words) EXPECT_NE(std::string(e.what()).find(w), std::string::npos) << e.what();
  }
}

TEST(Attention, BadInputNamesTheArgumentAndValue) {
  Tensor q = Tensor::zeros({2, 6, 10, 8}), k = Tensor::zeros({2, 4, 10, 8});
  expect_error<ShapeError>([&] { ops::attention(q, k, k); }, {"attention", "Hq = 6", "Hkv = 4"});
  Tensor k2 = Tensor::zeros({2, 2, 10, 4});
  expect_error<ShapeError>([&] { ops::attention(q, k2, k2); }, {"attention", "head dimension", "[2, 2, 10, 4]"});
  Tensor k3 = Tensor::zeros({3, 2, 10, 8});
  expect_error<ShapeError>([&] { ops::attention(q, k3, k3); }, {"attention", "batch", "[3, 2, 10, 8]"});
  Tensor kv = Tensor::zeros({2, 2, 10, 8}), v_bad = Tensor::zeros({2, 2, 11, 8});
  expect_error<ShapeError>([&] { ops::attention(q, kv, v_bad); }, {"attention", "[2, 2, 11, 8]"});
  expect_error<DTypeError>([&] { ops::attention(q, kv, kv.copy_as(DType::F64, Device::cpu())); }, {"attention"});

  MaskSpec lf = with_kind(MaskKind::Longformer, 2, 2);
  lf.global_tokens = {3, 12};
  expect_error<ValueError>([&] { ops::attention(q, kv, kv, lf); }, {"attention", "global_tokens[1] = 12"});
  expect_error<ValueError>([&] { ops::attention(q, kv, kv, MaskSpec::sliding(-1)); }, {"window_left = -1"});
  MaskSpec packed;
  packed.cu_seqlens = {{0, 4, 9}};
  expect_error<ValueError>([&] { ops::attention(q, kv, kv, packed); }, {"attention", "cu_seqlens[0] = [0, 4, 9]", "10"});
  MaskSpec pad;
  pad.key_lengths = {10};
  expect_error<ValueError>([&] { ops::attention(q, kv, kv, pad); }, {"attention", "key_lengths", "batch"});
  MaskSpec dil = with_kind(MaskKind::Dilated, 4, 0);
  dil.dilation = 0;
  expect_error<ValueError>([&] { ops::attention(q, kv, kv, dil); }, {"dilation = 0"});
  MaskSpec off = MaskSpec::causal_mask();
  off.q_offset = 5;
  off.seq_len = 12;
  expect_error<ValueError>([&] { ops::attention(q, kv, kv, off); }, {"attention", "seq_len = 12"});
  Tensor lse = Tensor::zeros({2, 6, 10});
  expect_error<ShapeError>([&] { ops::merge_attention(q, lse, q, Tensor::zeros({2, 6})); }, {"merge_attention", "[2, 6]"});
}

}  // namespace
}  // namespace strand
