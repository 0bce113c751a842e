// bfloat16 attention: the AVX512-BF16 tile kernels (where cpuid has them, else skipped) and the
// generic path (everywhere) against a float64 reference on the same bf16 values, for causal,
// sliding window, GQA, MQA, lengths that are not tile multiples and masked rows; per-element
// bounds from bf16's rounding of P and dS; the choice of path and its override; bf16 autocast
// reaching the tiles.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "framework/autograd/engine.h"
#include "framework/backend/cpu/attention_bf16.h"
#include "framework/backend/cpu/dispatch.h"
#include "framework/core/error.h"
#include "framework/ops/attention.h"
#include "framework/ops/view.h"
#include "framework/nn/attention.h"
#include "framework/nn/autocast.h"
#include "support/tolerance.h"

namespace strand {
namespace {

// bf16 keeps 8 significant bits: round to nearest is within 2^-8 relative.
constexpr double kUnitBf16 = 0x1.0p-8;

// Sets STRAND_ATTENTION_ISA for one scope.
class IsaGuard {
 public:
  explicit IsaGuard(const char* isa) {
    const char* old = std::getenv("STRAND_ATTENTION_ISA");
    had_ = old != nullptr;
    if (had_) old_ = old;
    setenv("STRAND_ATTENTION_ISA", isa, 1);
  }
  ~IsaGuard() {
    if (had_) setenv("STRAND_ATTENTION_ISA", old_.c_str(), 1);
    else unsetenv("STRAND_ATTENTION_ISA");
  }

 private:
  bool had_ = false;
  std::string old_;
};

struct Case {
  std::string name;
  MaskSpec mask;
  int64_t hq, hkv, nq, nk, d;
};

std::vector<Case> cases() {
  MaskSpec off = MaskSpec::causal_mask();
  off.q_offset = 70;
  off.k_offset = 0;
  off.seq_len = 141;
  MaskSpec pad;
  pad.key_lengths = {131, 0};  // batch row 1 has no key: o = 0, lse = -inf
  return {
      {"causal", MaskSpec::causal_mask(), 4, 4, 131, 131, 64},
      {"causal GQA D=80", MaskSpec::causal_mask(), 4, 2, 97, 97, 80},
      {"sliding w=37 MQA", MaskSpec::sliding(37), 4, 1, 150, 150, 64},
      {"sliding symmetric 20/9", MaskSpec::sliding(20, 9), 2, 2, 77, 77, 32},
      {"full cross", MaskSpec{}, 2, 1, 45, 131, 16},
      {"causal with offsets", off, 2, 2, 71, 141, 64},
      {"key padding", pad, 2, 2, 131, 131, 128},
      {"short", MaskSpec::causal_mask(), 2, 2, 3, 3, 64},
      {"odd D (the tiles need pairs: generic)", MaskSpec::causal_mask(), 2, 2, 33, 33, 15},
  };
}

struct Result {
  std::vector<double> o, lse, dq, dk, dv;
};

// o, lse and the gradients of sum(o * go) + sum(lse * glse) with respect to q, k, v.
Result run_attention(const Case& c, const Tensor& q0, const Tensor& k0, const Tensor& v0, const Tensor& go,
                     const Tensor& glse) {
  Tensor q = q0.detach(), k = k0.detach(), v = v0.detach();
  for (Tensor* t : {&q, &k, &v}) t->set_requires_grad(true);
  ops::AttentionOutput out = ops::attention(q, k, v, c.mask);
  std::vector<Tensor> g = autograd::grad({out.o, out.lse}, {go, glse}, {q, k, v});
  return {out.o.to_vector(), out.lse.to_vector(), g[0].to_vector(), g[1].to_vector(), g[2].to_vector()};
}

// The float64 reference, with beside every value a bound on what bf16 rounding inside the
// tiles may change it by (everything in float64, per element):
//   o:   P is rounded before P . V:         u * sum_j P_ij |v_j|                =: A_i
//   dV:  P rounded before P^T dO:           u * sum_i P_ij |dO_i|
//   Delta = dO . o inherits o's error:       u * sum_x |dO_ix| A_ix              =: E_i
//   dS = P (dP - Delta) rounded before use:  |dS_ij| u + P_ij E_i                =: F_ij
//   dK:  scale * sum_i F_ij |q_i|;  dQ: scale * sum_j F_ij |k_j|
// plus float32 accumulation (terms * eps_f32 * max) and the bf16 rounding of the returned o and
// gradients (u |value|). A factor 2 covers second-order terms.
struct Reference {
  Result value, bound;
};

Reference reference(const Case& c, const std::vector<double>& q, const std::vector<double>& k,
                    const std::vector<double>& v, const std::vector<double>& go, const std::vector<double>& glse,
                    int64_t batch) {
  const int64_t hq = c.hq, hkv = c.hkv, nq = c.nq, nk = c.nk, d = c.d, group = hq / hkv;
  const double scale = 1.0 / std::sqrt(static_cast<double>(d)), u = kUnitBf16;
  const Tensor dense = ops::dense_mask(c.mask, batch, nq, nk);
  const std::vector<double> mask = dense.to_vector();
  Reference r;
  auto zeros = [](int64_t n) { return std::vector<double>(static_cast<size_t>(n), 0.0); };
  for (Result* x : {&r.value, &r.bound}) {
    x->o = zeros(batch * hq * nq * d);
    x->lse = zeros(batch * hq * nq);
    x->dq = zeros(batch * hq * nq * d);
    x->dk = zeros(batch * hkv * nk * d);
    x->dv = zeros(batch * hkv * nk * d);
  }
  std::vector<double> p(static_cast<size_t>(nq * nk)), ds(p.size()), a(static_cast<size_t>(nq * d));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < hq; ++h) {
      const int64_t kh = h / group;
      auto qi = [&](int64_t i, int64_t x) { return q[static_cast<size_t>(((b * hq + h) * nq + i) * d + x)]; };
      auto gi = [&](int64_t i, int64_t x) { return go[static_cast<size_t>(((b * hq + h) * nq + i) * d + x)]; };
      auto kj = [&](int64_t j, int64_t x) { return k[static_cast<size_t>(((b * hkv + kh) * nk + j) * d + x)]; };
      auto vj = [&](int64_t j, int64_t x) { return v[static_cast<size_t>(((b * hkv + kh) * nk + j) * d + x)]; };
      const size_t row0 = static_cast<size_t>((b * hq + h) * nq), kv0 = static_cast<size_t>((b * hkv + kh) * nk);
      for (int64_t i = 0; i < nq; ++i) {
        double mx = -INFINITY;
        for (int64_t j = 0; j < nk; ++j) {
          double s = -INFINITY;
          if (mask[static_cast<size_t>((b * nq + i) * nk + j)] != 0) {
            s = 0;
            for (int64_t x = 0; x < d; ++x) s += qi(i, x) * kj(j, x);
            s *= scale;
          }
          p[static_cast<size_t>(i * nk + j)] = s;
          mx = std::max(mx, s);
        }
        double sum = 0;
        for (int64_t j = 0; j < nk; ++j) {
          double& pij = p[static_cast<size_t>(i * nk + j)];
          pij = mx == -INFINITY ? 0.0 : std::exp(pij - mx);
          sum += pij;
        }
        const double lse = sum > 0 ? mx + std::log(sum) : -INFINITY;
        r.value.lse[row0 + i] = lse;
        for (int64_t j = 0; j < nk; ++j) p[static_cast<size_t>(i * nk + j)] = sum > 0 ? p[static_cast<size_t>(i * nk + j)] / sum : 0.0;
        double e = 0, delta = 0;
        for (int64_t x = 0; x < d; ++x) {
          double o = 0, bound = 0;
          for (int64_t j = 0; j < nk; ++j) {
            const double pij = p[static_cast<size_t>(i * nk + j)];
            o += pij * vj(j, x);
            bound += pij * std::abs(vj(j, x));
          }
          r.value.o[(row0 + i) * d + x] = o;
          a[static_cast<size_t>(i * d + x)] = u * bound;
          e += std::abs(gi(i, x)) * u * bound;
          delta += gi(i, x) * o;
        }
        delta -= glse[row0 + i];
        for (int64_t j = 0; j < nk; ++j) {
          const double pij = p[static_cast<size_t>(i * nk + j)];
          double dp = 0;
          for (int64_t x = 0; x < d; ++x) dp += gi(i, x) * vj(j, x);
          const double dsij = pij * (dp - delta);
          ds[static_cast<size_t>(i * nk + j)] = dsij;
          const double f = std::abs(dsij) * u + pij * e;
          for (int64_t x = 0; x < d; ++x) {
            r.value.dv[(kv0 + j) * d + x] += pij * gi(i, x);
            r.bound.dv[(kv0 + j) * d + x] += u * pij * std::abs(gi(i, x));
            r.value.dk[(kv0 + j) * d + x] += scale * dsij * qi(i, x);
            r.bound.dk[(kv0 + j) * d + x] += scale * f * std::abs(qi(i, x));
            r.value.dq[(row0 + i) * d + x] += scale * dsij * kj(j, x);
            r.bound.dq[(row0 + i) * d + x] += scale * f * std::abs(kj(j, x));
          }
        }
        for (int64_t x = 0; x < d; ++x) r.bound.o[(row0 + i) * d + x] = a[static_cast<size_t>(i * d + x)];
      }
    }
  return r;
}

// |got - ref| <= 2 bound + u |ref| (rounded output) + terms eps_f32 max|ref| (float32 sums).
void expect_within(const std::vector<double>& got, const std::vector<double>& ref, const std::vector<double>& bound,
                   double terms, bool rounded_output, const std::string& label) {
  ASSERT_EQ(got.size(), ref.size()) << label;
  double mx = 0;
  for (double x : ref)
    if (std::isfinite(x)) mx = std::max(mx, std::abs(x));
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(ref[i])) {
      ASSERT_EQ(got[i], ref[i]) << label << " element " << i;
      continue;
    }
    const double tol = 2.0 * bound[i] + (rounded_output ? kUnitBf16 * std::abs(ref[i]) : 0.0) +
                       terms * testing::kEpsF32 * mx;
    ASSERT_LE(std::abs(got[i] - ref[i]), tol) << label << " element " << i << ": got " << got[i] << ", reference "
                                              << ref[i] << ", bound " << bound[i];
  }
}

// Runs every case on the path `isa` names and checks it against the float64 reference.
void check_cases(const char* isa) {
  IsaGuard guard(isa);
  ASSERT_EQ(cpu::attention_bf16_isa(), isa);
  uint64_t seed = 300;
  for (const Case& c : cases()) {
    const int64_t batch = 2;
    auto draw = [&](const Shape& s) {
      return Tensor::uniform(s, seed++, -1.0, 1.0, DType::F64).copy_as(DType::BF16, Device::cpu());
    };
    const Tensor q = draw({batch, c.hq, c.nq, c.d}), k = draw({batch, c.hkv, c.nk, c.d}),
                 v = draw({batch, c.hkv, c.nk, c.d}), go = draw({batch, c.hq, c.nq, c.d});
    const Tensor glse = Tensor::uniform({batch, c.hq, c.nq}, seed++, -1.0, 1.0);
    const Result got = run_attention(c, q, k, v, go, glse);
    const Reference ref =
        reference(c, q.to_vector(), k.to_vector(), v.to_vector(), go.to_vector(), glse.to_vector(), batch);
    const std::string label = c.name + " (" + isa + ")";
    const double fwd = static_cast<double>(c.d + c.nk), bwd = 2.0 * static_cast<double>(c.d + c.nk + c.nq * (c.hq / c.hkv));
    expect_within(got.o, ref.value.o, ref.bound.o, fwd, true, label + " o");
    expect_within(got.lse, ref.value.lse, ref.bound.lse, fwd, false, label + " lse");
    expect_within(got.dq, ref.value.dq, ref.bound.dq, bwd, true, label + " dq");
    expect_within(got.dk, ref.value.dk, ref.bound.dk, bwd, true, label + " dk");
    expect_within(got.dv, ref.value.dv, ref.bound.dv, bwd, true, label + " dv");
    if (::testing::Test::HasFatalFailure()) return;
  }
}

TEST(AttentionBf16, GenericPathMatchesFloat64Reference) { check_cases("generic"); }

TEST(AttentionBf16, Avx512Bf16TilesMatchFloat64Reference) {
  if (!cpu::cpu_has_avx512_bf16()) GTEST_SKIP() << "this CPU lacks AVX512-BF16";
  check_cases("avx512bf16");
}

TEST(AttentionBf16, DefaultPathIsTheTilesWhereTheCpuHasThem) {
  IsaGuard guard("auto");
  EXPECT_EQ(cpu::attention_bf16_isa(), cpu::cpu_has_avx512_bf16() ? "avx512bf16" : "generic");
}

TEST(AttentionBf16, TilesRoundPButGenericEqualsFloat32Kernel) {
  // The generic path is the float32 kernel on the widened values, bit for bit; the tiles round P
  // and dS to bf16, so they differ from it (which shows the override really switches paths).
  const Case c{"causal", MaskSpec::causal_mask(), 2, 2, 100, 100, 64};
  const Tensor q = Tensor::uniform({1, 2, 100, 64}, 1, -1, 1).copy_as(DType::BF16, Device::cpu());
  const Tensor k = Tensor::uniform({1, 2, 100, 64}, 2, -1, 1).copy_as(DType::BF16, Device::cpu());
  const Tensor v = Tensor::uniform({1, 2, 100, 64}, 3, -1, 1).copy_as(DType::BF16, Device::cpu());
  const Tensor f32_o = ops::attention(q.copy_as(DType::F32, Device::cpu()), k.copy_as(DType::F32, Device::cpu()),
                                      v.copy_as(DType::F32, Device::cpu()), c.mask)
                           .o.copy_as(DType::BF16, Device::cpu());
  std::vector<double> generic, tiles;
  {
    IsaGuard guard("generic");
    generic = ops::attention(q, k, v, c.mask).o.to_vector();
  }
  EXPECT_EQ(generic, f32_o.to_vector());
  if (!cpu::cpu_has_avx512_bf16()) GTEST_SKIP() << "this CPU lacks AVX512-BF16";
  {
    IsaGuard guard("avx512bf16");
    tiles = ops::attention(q, k, v, c.mask).o.to_vector();
  }
  EXPECT_NE(generic, tiles);
}

TEST(AttentionBf16, TilesBackwardIsBitwiseReproducible) {
  if (!cpu::cpu_has_avx512_bf16()) GTEST_SKIP() << "this CPU lacks AVX512-BF16";
  IsaGuard guard("avx512bf16");
  const Case c{"causal GQA", MaskSpec::causal_mask(), 4, 1, 200, 200, 64};
  auto bf = [](const Shape& s, uint64_t seed) { return Tensor::uniform(s, seed, -1, 1).copy_as(DType::BF16, Device::cpu()); };
  const Tensor q = bf({1, 4, 200, 64}, 1), k = bf({1, 1, 200, 64}, 2), v = bf({1, 1, 200, 64}, 3), go = bf({1, 4, 200, 64}, 4);
  const Result a = run_attention(c, q, k, v, go, Tensor::zeros({1, 4, 200}));
  const Result b = run_attention(c, q, k, v, go, Tensor::zeros({1, 4, 200}));
  EXPECT_EQ(a.dq, b.dq);
  EXPECT_EQ(a.dk, b.dk);
  EXPECT_EQ(a.dv, b.dv);
}

TEST(AttentionBf16, BadIsaOverrideNamesTheVariable) {
  IsaGuard guard("amx");
  try {
    cpu::attention_bf16_isa();
    FAIL() << "expected an error";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("STRAND_ATTENTION_ISA=amx"), std::string::npos) << e.what();
  }
}

TEST(AttentionBf16, TilesGiveEachHeadTheSameRowsWhateverTheLayoutAndOtherHeads) {
  // What Ulysses relies on: a head's rows do not depend on the other heads or the strides.
  if (!cpu::cpu_has_avx512_bf16()) GTEST_SKIP() << "this CPU lacks AVX512-BF16";
  IsaGuard guard("avx512bf16");
  auto bf = [](const Shape& s, uint64_t seed) { return Tensor::randn(s, seed).copy_as(DType::BF16, Device::cpu()); };
  const Tensor q = bf({2, 4, 26, 16}, 1), k = bf({2, 1, 26, 16}, 2), v = bf({2, 1, 26, 16}, 3);
  const std::vector<double> whole = ops::attention(q, k, v, MaskSpec::causal_mask()).o.to_vector();
  const Tensor q_half = ops::contiguous(ops::slice(q, 1, 2, 4));
  const std::vector<double> half = ops::attention(q_half, k, v, MaskSpec::causal_mask()).o.to_vector();
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t e = 0; e < 2 * 26 * 16; ++e)
      ASSERT_EQ(half[static_cast<size_t>(b * 2 * 26 * 16 + e)], whole[static_cast<size_t>((b * 4 + 2) * 26 * 16 + e)])
          << "batch " << b << " element " << e;
}

TEST(AttentionBf16, MixedPrecisionTrainingRunsTheTiles) {
  // Under bf16 autocast a one-rank attention block hands bf16 q, k, v to the kernels: its output
  // and gradients change with the path (the tiles round P), while float32 ignores it.
  if (!cpu::cpu_has_avx512_bf16()) GTEST_SKIP() << "this CPU lacks AVX512-BF16";
  nn::AttentionOptions options;
  options.mask.causal = true;
  options.seed = 5;
  const nn::MultiHeadAttention attn(64, 4, options);
  const Tensor x = Tensor::randn({2, 40, 64}, 6), positions = Tensor::arange(40, DType::I32);
  auto forward_backward = [&](const char* isa, DType compute) {
    IsaGuard guard(isa);
    Tensor xx = x.detach();
    xx.set_requires_grad(true);
    const nn::AutocastGuard autocast(compute);
    const Tensor y = attn.forward(xx, positions);
    const std::vector<Tensor> g = autograd::grad({y}, {Tensor::ones(y.shape())}, {xx});
    return std::make_pair(y.to_vector(), g[0].to_vector());
  };
  EXPECT_NE(forward_backward("avx512bf16", DType::BF16), forward_backward("generic", DType::BF16));
  EXPECT_EQ(forward_backward("avx512bf16", DType::F32), forward_backward("generic", DType::F32));
}

}  // namespace
}  // namespace strand
