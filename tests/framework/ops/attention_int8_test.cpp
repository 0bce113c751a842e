// INT8 attention for inference: o and lse against the float64 reference within the bound the
// quantisation steps give, per mask pattern, with GQA and odd lengths; keys with a large common
// offset (what the smoothing is for); the VNNI and portable paths bitwise equal; ring-style
// segments merged against the reference (the smoothing shift is added back); the scope and its
// errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "framework/autograd/grad_mode.h"
#include "framework/backend/cpu/attention_int8.h"
#include "framework/core/error.h"
#include "framework/ops/attention.h"
#include "framework/ops/attention_reference.h"
#include "framework/ops/elementwise.h"
#include "framework/ops/view.h"

namespace strand {
namespace {

struct Case {
  std::string name;
  MaskSpec mask;
  int64_t hq, hkv, nq, nk, d;
};

std::vector<Case> cases() {
  std::vector<Case> cs;
  cs.push_back({"full", MaskSpec{}, 2, 2, 100, 100, 64});
  cs.push_back({"causal", MaskSpec::causal_mask(), 2, 2, 130, 130, 64});
  cs.push_back({"causal GQA 4/2", MaskSpec::causal_mask(), 4, 2, 77, 77, 64});
  cs.push_back({"sliding causal w=37", MaskSpec::sliding(37), 2, 1, 150, 150, 32});
  MaskSpec dil;
  dil.kind = MaskKind::Dilated;
  dil.window_left = 60;
  dil.dilation = 3;
  dil.causal = true;
  cs.push_back({"dilated 60 d=3", dil, 2, 2, 100, 100, 64});
  MaskSpec off = MaskSpec::causal_mask();
  off.q_offset = 200;
  off.k_offset = 150;
  off.seq_len = 400;
  cs.push_back({"causal with offsets", off, 2, 2, 100, 100, 64});
  cs.push_back({"odd head dim 18", MaskSpec::causal_mask(), 2, 2, 65, 65, 18});
  return cs;
}

Tensor draw(const Shape& s, uint64_t seed, double shift = 0.0) {
  return ops::add_scalar(Tensor::uniform(s, seed, -1.0, 1.0, DType::F32), shift);
}

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

// How far quantisation moves one score (Note [INT8 scores]): each product q_x k_x gains a
// rounding error of at most qmax s_k / 2 + kmax s_q / 2 (qmax = max |q * scale| = 127 s_q, kmax =
// max |k - mean| = 127 s_k, bounded here by the whole tensor's range). These errors are
// independent and uniform, so a sum of D of them has standard deviation at most
// sqrt(D / 12) sqrt((qmax s_k)^2 + (kmax s_q)^2): the bound is 6 of those (a chance below 1e-8 per
// score of exceeding it). Keys with a common offset that were not smoothed would have kmax, and the
// error, several times larger.
double score_error_bound(const Tensor& q, const Tensor& k, double scale) {
  const std::vector<double> kv = k.to_vector();
  const int64_t d = k.shape()[3], n = k.shape()[2], heads = k.shape()[0] * k.shape()[1];
  double kmax = 0;
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t x = 0; x < d; ++x) {
      double mean = 0;
      for (int64_t j = 0; j < n; ++j) mean += kv[static_cast<size_t>((h * n + j) * d + x)];
      mean /= static_cast<double>(n);
      for (int64_t j = 0; j < n; ++j) kmax = std::max(kmax, std::abs(kv[static_cast<size_t>((h * n + j) * d + x)] - mean));
    }
  const double qmax = max_abs(q.to_vector()) * scale, sq = qmax / 127.0, sk = kmax / 127.0;
  return 6.0 * std::sqrt(static_cast<double>(d) / 12.0) * std::hypot(qmax * sk, kmax * sq) + 1e-5;
}

struct Errors {
  double o = 0, lse = 0;
};

// max |got - reference| of o and lse over attended rows; empty rows must match exactly.
Errors errors(const ops::AttentionOutput& got, const ops::AttentionOutput& ref) {
  const auto go = got.o.to_vector(), ro = ref.o.to_vector(), gl = got.lse.to_vector(), rl = ref.lse.to_vector();
  Errors e;
  for (size_t i = 0; i < ro.size(); ++i) e.o = std::max(e.o, std::abs(go[i] - ro[i]));
  for (size_t i = 0; i < rl.size(); ++i) {
    if (!std::isfinite(rl[i])) {
      EXPECT_EQ(gl[i], rl[i]) << "row " << i;
      continue;
    }
    e.lse = std::max(e.lse, std::abs(gl[i] - rl[i]));
  }
  return e;
}

ops::AttentionOutput int8_attention(const Tensor& q, const Tensor& k, const Tensor& v, const MaskSpec& mask,
                                    bool generic = false) {
  autograd::NoGradGuard no_grad;
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.shape()[3]));
  Tensor o = Tensor::empty(q.shape(), DType::F32, Device::cpu());
  Tensor lse = Tensor::empty({q.shape()[0], q.shape()[1], q.shape()[2]}, DType::F32, Device::cpu());
  ops::attention_segment_forward_int8(q, k, v, mask, scale, o, lse, generic);
  return {o, lse};
}

ops::AttentionOutput reference(const Tensor& q, const Tensor& k, const Tensor& v, const MaskSpec& mask) {
  autograd::NoGradGuard no_grad;
  auto f64 = [](const Tensor& t) { return t.copy_as(DType::F64, t.device()); };
  return ops::attention_reference(f64(q), f64(k), f64(v), ops::dense_mask(mask, q.shape()[0], q.shape()[2], k.shape()[2]));
}

// Every pattern within the quantisation bound: |lse error| <= the score bound, |o error| <=
// 2 bound max|v| (o is a convex combination of value rows whose weights move by at most
// e^(2 bound) - 1 ~ 2 bound relative) plus float32 rounding.
void check_case(const Case& c, double key_shift) {
  const int64_t b = 2;
  const Tensor q = draw({b, c.hq, c.nq, c.d}, 11), k = draw({b, c.hkv, c.nk, c.d}, 12, key_shift),
               v = draw({b, c.hkv, c.nk, c.d}, 13);
  const ops::AttentionOutput got = int8_attention(q, k, v, c.mask), ref = reference(q, k, v, c.mask);
  const double bound = score_error_bound(q, k, 1.0 / std::sqrt(static_cast<double>(c.d)));
  const Errors e = errors(got, ref);
  std::printf("  %-22s key shift %g: max |o err| %.2e, max |lse err| %.2e (score bound %.2e)\n", c.name.c_str(),
              key_shift, e.o, e.lse, bound);
  EXPECT_LE(e.lse, bound) << c.name;
  EXPECT_LE(e.o, 2.0 * std::expm1(bound) * max_abs(v.to_vector()) + 1e-5) << c.name;
}

TEST(Int8Attention, EveryPatternIsWithinTheQuantisationBoundOfTheFloat64Reference) {
  for (const Case& c : cases()) check_case(c, 0.0);
}

TEST(Int8Attention, KeysWithALargeCommonOffsetAreSmoothedFirst) {
  // Keys in [4, 6]: without smoothing the 8 bits would cover [-6, 6] and the bound, taken from
  // |k - mean| <= 1, would not hold.
  for (const Case& c : cases()) check_case(c, 5.0);
}

TEST(Int8Attention, TheVnniAndPortablePathsAreBitwiseEqual) {
  if (!cpu::cpu_has_vnni()) GTEST_SKIP() << "skipped: this CPU has no AVX512-VNNI";
  for (const Case& c : cases()) {
    const Tensor q = draw({1, c.hq, c.nq, c.d}, 21), k = draw({1, c.hkv, c.nk, c.d}, 22), v = draw({1, c.hkv, c.nk, c.d}, 23);
    const ops::AttentionOutput a = int8_attention(q, k, v, c.mask, false), g = int8_attention(q, k, v, c.mask, true);
    EXPECT_EQ(a.o.to_vector(), g.o.to_vector()) << c.name;
    EXPECT_EQ(a.lse.to_vector(), g.lse.to_vector()) << c.name;
  }
}

TEST(Int8Attention, SegmentsMergedLikeARingMatchTheReference) {
  // Two key blocks, each smoothed by its own mean: their lse are true log-sum-exps, so the exact
  // merge gives the whole result within the bound.
  const int64_t n = 192, d = 64;
  const Tensor q = draw({1, 2, n, d}, 31), k = draw({1, 2, n, d}, 32, 2.0), v = draw({1, 2, n, d}, 33);
  const MaskSpec whole = MaskSpec::causal_mask();
  MaskSpec first = whole, second = whole;
  first.seq_len = second.seq_len = n;
  second.k_offset = 128;
  const ops::AttentionOutput a = int8_attention(q, ops::attention_rows(k, 0, 128), ops::attention_rows(v, 0, 128), first);
  const ops::AttentionOutput b = int8_attention(q, ops::attention_rows(k, 128, 64), ops::attention_rows(v, 128, 64), second);
  const ops::AttentionOutput merged = ops::merge_attention(a.o, a.lse, b.o, b.lse);
  const double bound = score_error_bound(q, k, 1.0 / 8.0);
  const Errors e = errors(merged, reference(q, k, v, whole));
  EXPECT_LE(e.lse, bound);
  EXPECT_LE(e.o, 2.0 * std::expm1(bound) + 1e-5);
}

TEST(Int8Attention, TheScopeRoutesAttentionToInt8ForInferenceOnly) {
  const Tensor q = draw({1, 2, 70, 64}, 41), k = draw({1, 2, 70, 64}, 42), v = draw({1, 2, 70, 64}, 43);
  const MaskSpec causal = MaskSpec::causal_mask();
  autograd::NoGradGuard no_grad;
  const ops::AttentionOutput fp32 = ops::attention(q, k, v, causal);
  ops::AttentionOutput int8;
  {
    ops::Int8AttentionScope scope;
    EXPECT_TRUE(ops::int8_attention_enabled());
    int8 = ops::attention(q, k, v, causal);
  }
  EXPECT_FALSE(ops::int8_attention_enabled());
  EXPECT_NE(fp32.o.to_vector(), int8.o.to_vector());  // the int8 path ran
  EXPECT_EQ(int8.o.to_vector(), int8_attention(q, k, v, causal).o.to_vector());
  {
    autograd::set_grad_enabled(true);
    ops::Int8AttentionScope scope;
    EXPECT_THROW(ops::attention(q, k, v, causal), AutogradError);
    autograd::set_grad_enabled(false);
  }
  ops::Int8AttentionScope scope;
  EXPECT_THROW(ops::attention(q.copy_as(DType::F64, Device::cpu()), k.copy_as(DType::F64, Device::cpu()),
                              v.copy_as(DType::F64, Device::cpu()), causal),
               DTypeError);
}

}  // namespace
}  // namespace strand
