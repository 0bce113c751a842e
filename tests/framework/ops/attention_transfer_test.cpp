// MiniLM attention transfer: the key-block loss and its hand-written gradients against a direct
// float64 computation from the full softmax matrices (causal, sliding window, GQA on either
// side, different head widths, odd lengths, offsets, unmasked cross attention), a float64
// central-difference check, independence of the key block, zero at student = teacher; the same
// for unequal head counts (head-averaged distributions); and the sampled query rows (all rows
// bit for bit, the drawn rows against the reference, the draw itself, the refusals).
#include "framework/ops/attention_transfer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "framework/autograd/engine.h"
#include "framework/core/error.h"
#include "framework/ops/attention.h"
#include "support/attention_probabilities.h"
#include "support/gradcheck.h"

namespace strand {
namespace {

using testing::softmax_rows;

struct Direct {
  double loss = 0.0;
  std::vector<double> dq, dk;
};

// mean over (b, h, i) of sum_j p_t log(p_t / p_s); dS = (P_s - P_t) / rows, dq = dS K scale,
// dk = dS^T Q scale summed over the query heads of each key head.
Direct direct(const Tensor& qs, const Tensor& ks, const Tensor& qt, const Tensor& kt, const MaskSpec& mask) {
  const int64_t B = qs.size(0), H = qs.size(1), Nq = qs.size(2), D = qs.size(3), Hkv = ks.size(1), Nk = ks.size(2);
  const std::vector<double> m = ops::dense_mask(mask, B, Nq, Nk).to_vector();
  const std::vector<double> ps = softmax_rows(qs, ks, m), pt = softmax_rows(qt, kt, m);
  const double rows = static_cast<double>(B * H * Nq), scale = 1.0 / std::sqrt(static_cast<double>(D));
  const std::vector<double> qv = qs.to_vector(), kv = ks.to_vector();
  Direct d;
  d.dq.assign(qv.size(), 0.0);
  d.dk.assign(kv.size(), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < Nq; ++i)
        for (int64_t j = 0; j < Nk; ++j) {
          const size_t e = static_cast<size_t>(((b * H + h) * Nq + i) * Nk + j);
          if (pt[e] > 0) d.loss += pt[e] * std::log(pt[e] / ps[e]) / rows;
          const double ds = (ps[e] - pt[e]) / rows * scale;
          const int64_t hk = h / (H / Hkv);
          for (int64_t x = 0; x < D; ++x) {
            const size_t qi = static_cast<size_t>(((b * H + h) * Nq + i) * D + x);
            const size_t kj = static_cast<size_t>(((b * Hkv + hk) * Nk + j) * D + x);
            d.dq[qi] += ds * kv[kj];
            d.dk[kj] += ds * qv[qi];
          }
        }
  return d;
}

struct Case {
  std::string name;
  MaskSpec mask;
  int64_t h, hkv_s, hkv_t, nq, nk, d_s, d_t;
};

std::vector<Case> cases() {
  MaskSpec offsets = MaskSpec::causal_mask();
  offsets.q_offset = 9;
  offsets.k_offset = 2;
  offsets.seq_len = 30;
  MaskSpec causal_window = MaskSpec::sliding(4);
  causal_window.causal = true;
  return {{"causal, odd length", MaskSpec::causal_mask(), 2, 2, 2, 13, 13, 8, 8},
          {"sliding window 4", MaskSpec::sliding(4), 2, 2, 2, 11, 11, 8, 8},
          {"causal sliding window 4", causal_window, 2, 2, 2, 17, 17, 4, 8},
          {"causal, GQA 4/2 student, MQA teacher", MaskSpec::causal_mask(), 4, 2, 1, 9, 9, 6, 10},
          {"causal with offsets", offsets, 2, 1, 2, 7, 19, 8, 8},
          {"full cross, odd lengths", MaskSpec{}, 3, 3, 1, 5, 7, 4, 4}};
}

struct Inputs {
  Tensor qs, ks, qt, kt;
};

Inputs draw(const Case& c, uint64_t seed, double spread = 2.0) {
  Inputs in;
  in.qs = Tensor::uniform({2, c.h, c.nq, c.d_s}, seed, -spread, spread, DType::F64);
  in.ks = Tensor::uniform({2, c.hkv_s, c.nk, c.d_s}, seed + 1, -spread, spread, DType::F64);
  in.qt = Tensor::uniform({2, c.h, c.nq, c.d_t}, seed + 2, -spread, spread, DType::F64);
  in.kt = Tensor::uniform({2, c.hkv_t, c.nk, c.d_t}, seed + 3, -spread, spread, DType::F64);
  in.qs.set_requires_grad(true);
  in.ks.set_requires_grad(true);
  return in;
}

void expect_near_all(const std::vector<double>& got, const std::vector<double>& want, double tol,
                     const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], tol) << what << " element " << i;
}

TEST(AttentionTransfer, LossAndGradientsMatchTheMaterialisedSoftmaxes) {
  for (const Case& c : cases()) {
    const Inputs in = draw(c, 21);
    const Direct want = direct(in.qs, in.ks, in.qt, in.kt, c.mask);
    ASSERT_GT(want.loss, 1e-3) << c.name;  // distinct models: a real divergence to match
    for (int64_t block : {1, 4, 64}) {
      const Tensor loss = ops::attention_transfer_loss(in.qs, in.ks, in.qt, in.kt, c.mask, ops::Reduction::Mean,
                                                       0.0, 0.0, block);
      const std::string what = c.name + ", key block " + std::to_string(block);
      EXPECT_NEAR(loss.item(), want.loss, 1e-12) << what;
      const std::vector<Tensor> g = autograd::grad({loss}, {Tensor::full({}, 1.0, DType::F64)}, {in.qs, in.ks});
      expect_near_all(g[0].to_vector(), want.dq, 1e-13, what + " dq");
      expect_near_all(g[1].to_vector(), want.dk, 1e-13, what + " dk");
    }
  }
}

TEST(AttentionTransfer, GradientsMatchCentralDifferences) {
  for (const Case& c : cases()) {
    const Inputs in = draw(c, 40, 1.0);
    testing::expect_gradients_match(
        [&](const std::vector<Tensor>& x) {
          return ops::attention_transfer_loss(x[0], x[1], in.qt, in.kt, c.mask, ops::Reduction::Sum, 0.0, 0.0, 3);
        },
        {in.qs, in.ks}, c.name);
  }
}

TEST(AttentionTransfer, SumIsTheMeanTimesTheRowsAndTheTeacherGetsNoGradient) {
  const Case c = cases()[3];
  Inputs in = draw(c, 5);
  in.qt.set_requires_grad(true);
  in.kt.set_requires_grad(true);
  const Tensor mean = ops::attention_transfer_loss(in.qs, in.ks, in.qt, in.kt, c.mask);
  const Tensor sum = ops::attention_transfer_loss(in.qs, in.ks, in.qt, in.kt, c.mask, ops::Reduction::Sum);
  EXPECT_NEAR(sum.item(), mean.item() * static_cast<double>(2 * c.h * c.nq), 1e-11);
  autograd::backward({sum}, {Tensor::full({}, 1.0, DType::F64)});
  EXPECT_TRUE(in.qs.grad().defined());
  EXPECT_FALSE(in.qt.grad().defined());
  EXPECT_FALSE(in.kt.grad().defined());
}

TEST(AttentionTransfer, AStudentEqualToItsTeacherHasZeroLossAndGradient) {
  const Case c = cases()[2];
  Case same = c;
  same.d_t = c.d_s;
  same.hkv_t = c.hkv_s;
  Inputs in = draw(same, 8);
  const Tensor loss = ops::attention_transfer_loss(in.qs, in.ks, in.qs.detach(), in.ks.detach(), c.mask);
  EXPECT_NEAR(loss.item(), 0.0, 1e-14);
  const std::vector<Tensor> g = autograd::grad({loss}, {Tensor::full({}, 1.0, DType::F64)}, {in.qs, in.ks});
  for (const Tensor& t : g)
    for (double v : t.to_vector()) ASSERT_NEAR(v, 0.0, 1e-15);
}

// Unequal head counts: the student's heads h_s, the teacher's h_t (key heads hkv_s, hkv_t).
struct AveragedCase {
  std::string name;
  MaskSpec mask;
  int64_t h_s, hkv_s, h_t, hkv_t, nq, nk, d_s, d_t;
};

std::vector<AveragedCase> averaged_cases() {
  MaskSpec offsets = MaskSpec::causal_mask();
  offsets.q_offset = 9;
  offsets.k_offset = 2;
  offsets.seq_len = 30;
  MaskSpec causal_window = MaskSpec::sliding(4);
  causal_window.causal = true;
  return {{"causal, 2 student heads vs 4", MaskSpec::causal_mask(), 2, 2, 4, 4, 13, 13, 8, 8},
          {"causal, 3 student heads vs 2", MaskSpec::causal_mask(), 3, 3, 2, 2, 11, 11, 6, 8},
          {"sliding window 4, 2 vs 4", MaskSpec::sliding(4), 2, 2, 4, 4, 11, 11, 8, 8},
          {"causal sliding window 4, 3 vs 2 MQA teacher", causal_window, 3, 3, 2, 1, 17, 17, 4, 8},
          {"causal, GQA 4/2 student vs 2 MQA teacher", MaskSpec::causal_mask(), 4, 2, 2, 1, 9, 9, 6, 10},
          {"causal with offsets, 2/1 vs 4/2", offsets, 2, 1, 4, 2, 7, 19, 8, 8},
          {"full cross, odd lengths, 3 vs 2", MaskSpec{}, 3, 3, 2, 1, 5, 7, 4, 4}};
}

Inputs draw(const AveragedCase& c, uint64_t seed, double spread = 2.0) {
  Inputs in;
  in.qs = Tensor::uniform({2, c.h_s, c.nq, c.d_s}, seed, -spread, spread, DType::F64);
  in.ks = Tensor::uniform({2, c.hkv_s, c.nk, c.d_s}, seed + 1, -spread, spread, DType::F64);
  in.qt = Tensor::uniform({2, c.h_t, c.nq, c.d_t}, seed + 2, -spread, spread, DType::F64);
  in.kt = Tensor::uniform({2, c.hkv_t, c.nk, c.d_t}, seed + 3, -spread, spread, DType::F64);
  in.qs.set_requires_grad(true);
  in.ks.set_requires_grad(true);
  return in;
}

testing::TransferReference reference(const Inputs& in, const MaskSpec& mask, const std::vector<uint8_t>& keep = {}) {
  const std::vector<double> m =
      ops::dense_mask(mask, in.qs.size(0), in.qs.size(2), in.ks.size(2)).to_vector();
  return testing::transfer_reference(in.qs.detach(), in.ks.detach(), in.qt, in.kt, m, keep);
}

TEST(AttentionTransfer, UnequalHeadCountsMatchTheHeadAveragedMaterialisedSoftmaxes) {
  for (const AveragedCase& c : averaged_cases()) {
    const Inputs in = draw(c, 31);
    const testing::TransferReference want = reference(in, c.mask);
    const double rows = static_cast<double>(2 * c.nq);  // Mean: over (b, query row)
    ASSERT_GT(want.loss, 1e-3) << c.name;
    for (int64_t block : {1, 4, 64}) {
      const Tensor loss = ops::attention_transfer_loss(in.qs, in.ks, in.qt, in.kt, c.mask, ops::Reduction::Mean,
                                                       0.0, 0.0, block);
      const std::string what = c.name + ", key block " + std::to_string(block);
      EXPECT_NEAR(loss.item(), want.loss / rows, 1e-12) << what;
      const std::vector<Tensor> g = autograd::grad({loss}, {Tensor::full({}, 1.0, DType::F64)}, {in.qs, in.ks});
      std::vector<double> dq = want.dq, dk = want.dk;
      for (double& v : dq) v /= rows;
      for (double& v : dk) v /= rows;
      expect_near_all(g[0].to_vector(), dq, 1e-13, what + " dq");
      expect_near_all(g[1].to_vector(), dk, 1e-13, what + " dk");
    }
  }
}

TEST(AttentionTransfer, HeadAveragedGradientsMatchCentralDifferences) {
  for (const AveragedCase& c : averaged_cases()) {
    const Inputs in = draw(c, 50, 1.0);
    testing::expect_gradients_match(
        [&](const std::vector<Tensor>& x) {
          return ops::attention_transfer_loss(x[0], x[1], in.qt, in.kt, c.mask, ops::Reduction::Sum, 0.0, 0.0, 3);
        },
        {in.qs, in.ks}, c.name);
  }
}

TEST(AttentionTransfer, EqualHeadCountsKeepTheHeadByHeadTerm) {
  // The reference's head-by-head branch is the existing direct() in Sum form: the dispatch on the
  // head counts leaves equal counts on the per-head path.
  const Case c = cases()[3];
  const Inputs in = draw(c, 21);
  const Tensor sum = ops::attention_transfer_loss(in.qs, in.ks, in.qt, in.kt, c.mask, ops::Reduction::Sum);
  EXPECT_NEAR(sum.item(), reference(in, c.mask).loss, 1e-11);
  EXPECT_NEAR(sum.item(), direct(in.qs, in.ks, in.qt, in.kt, c.mask).loss * static_cast<double>(2 * c.h * c.nq), 1e-11);
}

TEST(AttentionTransfer, ATeacherWhoseHeadsRepeatTheStudentsHasZeroAveragedLoss) {
  // Teacher heads [A, B, A, B] against student heads [A, B]: equal averages, so zero loss and
  // gradient, although head 1 of the teacher differs from head 1 of a one-to-one pairing.
  const Tensor q = Tensor::uniform({1, 2, 9, 8}, 4, -2.0, 2.0, DType::F64);
  const Tensor k = Tensor::uniform({1, 2, 9, 8}, 5, -2.0, 2.0, DType::F64);
  Tensor qs = q, ks = k;
  qs.set_requires_grad(true);
  ks.set_requires_grad(true);
  const std::vector<double> qv = q.to_vector(), kv = k.to_vector();
  std::vector<double> q4 = qv, k4 = kv;
  q4.insert(q4.end(), qv.begin(), qv.end());
  k4.insert(k4.end(), kv.begin(), kv.end());
  const Tensor qt = Tensor::from_vector(q4, {1, 4, 9, 8}, DType::F64), kt = Tensor::from_vector(k4, {1, 4, 9, 8}, DType::F64);
  const Tensor loss = ops::attention_transfer_loss(qs, ks, qt, kt, MaskSpec::causal_mask());
  EXPECT_NEAR(loss.item(), 0.0, 1e-14);
  for (const Tensor& g : autograd::grad({loss}, {Tensor::full({}, 1.0, DType::F64)}, {qs, ks}))
    for (double v : g.to_vector()) ASSERT_NEAR(v, 0.0, 1e-14);
}

// Sampled rows ------------------------------------------------------------------------------

TEST(AttentionTransfer, SamplingEveryRowGivesTheAllRowsTermBitForBit) {
  for (const Case& c : cases()) {
    const Inputs in = draw(c, 17);
    const Tensor all = ops::attention_transfer_loss(in.qs, in.ks, in.qt, in.kt, c.mask);
    const Tensor sampled =
        ops::attention_transfer_loss(in.qs, in.ks, in.qt, in.kt, c.mask, ops::Reduction::Mean, 0.0, 0.0, 64,
                                     ops::RowSample{c.nq, 99});
    EXPECT_EQ(sampled.item(), all.item()) << c.name;
    const std::vector<Tensor> ga = autograd::grad({all}, {Tensor::full({}, 1.0, DType::F64)}, {in.qs, in.ks});
    const std::vector<Tensor> gs = autograd::grad({sampled}, {Tensor::full({}, 1.0, DType::F64)}, {in.qs, in.ks});
    EXPECT_EQ(gs[0].to_vector(), ga[0].to_vector()) << c.name;
    EXPECT_EQ(gs[1].to_vector(), ga[1].to_vector()) << c.name;
  }
}

TEST(AttentionTransfer, SampledRowsMatchTheReferenceOverTheDrawnRows) {
  auto check = [](const std::string& name, const Inputs& in, const MaskSpec& mask, int64_t nq, int64_t n) {
    const ops::RowSample sample{n, 1234};
    MaskSpec m = mask;
    std::vector<uint8_t> keep;
    for (int64_t b = 0; b < 2; ++b) {
      const std::vector<uint8_t> drawn = ops::drawn_rows(sample, b, m.q_offset, nq);
      int64_t count = 0;
      for (uint8_t d : drawn) count += d;
      ASSERT_EQ(count, n) << name;
      keep.insert(keep.end(), drawn.begin(), drawn.end());
    }
    const testing::TransferReference want = reference(in, mask, keep);
    const double w = static_cast<double>(nq) / static_cast<double>(n);
    const Tensor got =
        ops::attention_transfer_loss(in.qs, in.ks, in.qt, in.kt, mask, ops::Reduction::Sum, 0.0, 0.0, 4, sample);
    EXPECT_NEAR(got.item(), want.loss * w, 1e-11) << name;
    const std::vector<Tensor> g = autograd::grad({got}, {Tensor::full({}, 1.0, DType::F64)}, {in.qs, in.ks});
    std::vector<double> dq = want.dq, dk = want.dk;
    for (double& v : dq) v *= w;
    for (double& v : dk) v *= w;
    expect_near_all(g[0].to_vector(), dq, 1e-12, name + " dq");
    expect_near_all(g[1].to_vector(), dk, 1e-12, name + " dk");
  };
  for (const Case& c : cases()) check(c.name, draw(c, 23), c.mask, c.nq, std::max<int64_t>(1, c.nq / 3));
  for (const AveragedCase& c : averaged_cases()) check(c.name, draw(c, 24), c.mask, c.nq, std::max<int64_t>(1, c.nq / 3));
}

TEST(AttentionTransfer, TheRowDrawIsUniformDistinctAndKeyedByPosition) {
  const ops::RowSample sample{5, 7};
  const std::vector<uint8_t> a = ops::drawn_rows(sample, 0, 0, 40);
  EXPECT_EQ(a, ops::drawn_rows(sample, 0, 0, 40));        // deterministic
  EXPECT_NE(a, ops::drawn_rows(sample, 1, 0, 40));        // another batch row draws other rows
  EXPECT_NE(a, ops::drawn_rows({5, 8}, 0, 0, 40));        // another seed too
  // Over many seeds every position is drawn about rows / n of the time (5/40 = 1/8).
  std::vector<double> hits(40, 0.0);
  const int draws = 4000;
  for (int s = 0; s < draws; ++s) {
    const std::vector<uint8_t> d = ops::drawn_rows({5, static_cast<uint64_t>(s)}, 0, 0, 40);
    for (size_t i = 0; i < d.size(); ++i) hits[i] += d[i];
  }
  for (double h : hits) EXPECT_NEAR(h / draws, 0.125, 0.03);  // binomial sd 0.0052
}

TEST(AttentionTransfer, TheSampledTermIsAnUnbiasedEstimateOfTheAllRowsTerm) {
  // Over many draws the weighted sum of the drawn rows averages to the all-rows sum, head by head
  // and head-averaged; one draw alone is not it.
  const Inputs by_head = draw(cases()[0], 61);
  const Inputs averaged = draw(averaged_cases()[1], 62);
  for (const auto& [in, mask] : {std::pair{&by_head, cases()[0].mask}, std::pair{&averaged, averaged_cases()[1].mask}}) {
    const double all = ops::attention_transfer_loss(in->qs, in->ks, in->qt, in->kt, mask, ops::Reduction::Sum).item();
    const int draws = 3000;
    double sum = 0.0, sq = 0.0;
    for (int s = 0; s < draws; ++s) {
      const double v = ops::attention_transfer_loss(in->qs.detach(), in->ks.detach(), in->qt, in->kt, mask,
                                                    ops::Reduction::Sum, 0.0, 0.0, 64,
                                                    ops::RowSample{4, static_cast<uint64_t>(s)})
                           .item();
      sum += v;
      sq += v * v;
    }
    const double mean = sum / draws, sd = std::sqrt(sq / draws - mean * mean);
    EXPECT_GT(sd, 1e-3 * all);  // a draw is an estimate
    EXPECT_NEAR(mean, all, 4.0 * sd / std::sqrt(static_cast<double>(draws)));
  }
}

TEST(AttentionTransfer, SampledRowCountsOutsideZeroToTheRowsAreRefused) {
  const Case c = cases()[0];
  const Inputs in = draw(c, 3);
  for (int64_t n : {int64_t{-1}, c.nq + 1}) {
    try {
      (void)ops::attention_transfer_loss(in.qs, in.ks, in.qt, in.kt, c.mask, ops::Reduction::Mean, 0.0, 0.0, 64,
                                         ops::RowSample{n, 1});
      FAIL() << n << " sampled rows accepted";
    } catch (const ValueError& e) {
      EXPECT_NE(std::string(e.what()).find("sampled query rows"), std::string::npos) << e.what();
    }
  }
}

Tensor f32(const Tensor& t) { return t.detach().copy_as(DType::F32, t.device()); }

TEST(AttentionTransfer, Float32InputsGiveTheFloat64LossToFloat32Precision) {
  const Case c = cases()[0];
  const Inputs in = draw(c, 3);
  const Tensor want = ops::attention_transfer_loss(in.qs, in.ks, in.qt, in.kt, c.mask);
  const Tensor got = ops::attention_transfer_loss(f32(in.qs), f32(in.ks), f32(in.qt), f32(in.kt), c.mask);
  EXPECT_EQ(got.dtype(), DType::F32);
  EXPECT_NEAR(got.item(), want.item(), 1e-5 * want.item());
}

}  // namespace
}  // namespace strand
