// Mask spec and tile logic of the fused attention: the per-pair rule on hand-checked cases, tile
// classification and reach against brute force, the partial-tile fill, BigBird's draw agreeing
// across blocks of a sequence, and the kernels run with small tiles (many tile classes) against
// the default tiling.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "framework/autograd/engine.h"
#include "framework/backend/attention_mask.h"
#include "framework/backend/cpu/attention_kernels.h"
#include "framework/core/error.h"
#include "framework/ops/attention.h"
#include "framework/ops/view.h"

namespace strand {
namespace {

using strand::MaskPlan;
using strand::TileClass;

MaskSpec windowed(MaskKind kind, int64_t left, int64_t right) {
  MaskSpec m;
  m.kind = kind;
  m.window_left = left;
  m.window_right = right;
  return m;
}

// Specs over a 70-position sequence (B = 2) covering every kind and modifier.
std::vector<std::pair<std::string, MaskSpec>> specs() {
  std::vector<std::pair<std::string, MaskSpec>> s;
  s.push_back({"full", MaskSpec{}});
  s.push_back({"causal", MaskSpec::causal_mask()});
  s.push_back({"sliding", MaskSpec::sliding(9)});
  s.push_back({"sliding symmetric", MaskSpec::sliding(4, 6)});
  MaskSpec dil = windowed(MaskKind::Dilated, 20, 6);
  dil.dilation = 4;
  s.push_back({"dilated", dil});
  MaskSpec lf = windowed(MaskKind::Longformer, 3, 3);
  lf.global_tokens = {0, 33, 34, 69};
  s.push_back({"longformer", lf});
  MaskSpec bb = windowed(MaskKind::BigBird, 2, 2);
  bb.global_tokens = {10};
  bb.block_size = 7;
  bb.random_blocks = 2;
  bb.seed = 3;
  s.push_back({"bigbird", bb});
  MaskSpec bb_causal = bb;
  bb_causal.causal = true;
  s.push_back({"bigbird causal", bb_causal});
  MaskSpec lf_causal = lf;
  lf_causal.window_right = 0;
  lf_causal.causal = true;
  s.push_back({"longformer causal", lf_causal});
  MaskSpec pad = MaskSpec::causal_mask();
  pad.key_lengths = {70, 41};
  s.push_back({"causal + padding", pad});
  MaskSpec packed = MaskSpec::sliding(12);
  packed.cu_seqlens = {{0, 5, 5, 30, 70}, {0, 69, 70}};
  s.push_back({"sliding + packed rows", packed});
  MaskSpec off = MaskSpec::causal_mask();
  off.q_offset = 30;
  off.k_offset = 10;
  off.seq_len = 100;
  s.push_back({"causal with offsets", off});
  return s;
}

TEST(AttentionMask, PairRuleMatchesHandCheckedCases) {
  auto rows = [](const MaskSpec& m, int64_t nq, int64_t nk) {
    std::vector<std::string> out;
    const auto v = ops::dense_mask(m, 1, nq, nk).to_vector();
    for (int64_t i = 0; i < nq; ++i) {
      std::string r;
      for (int64_t j = 0; j < nk; ++j) r += v[static_cast<size_t>(i * nk + j)] != 0 ? '1' : '.';
      out.push_back(r);
    }
    return out;
  };
  using S = std::vector<std::string>;
  EXPECT_EQ(rows(MaskSpec::causal_mask(), 4, 4), (S{"1...", "11..", "111.", "1111"}));
  EXPECT_EQ(rows(MaskSpec::sliding(1), 4, 4), (S{"1...", "11..", ".11.", "..11"}));
  EXPECT_EQ(rows(MaskSpec::sliding(1, 1), 4, 4), (S{"11..", "111.", ".111", "..11"}));
  MaskSpec dil = windowed(MaskKind::Dilated, 4, 0);
  dil.dilation = 2;
  EXPECT_EQ(rows(dil, 5, 5), (S{"1....", ".1...", "1.1..", ".1.1.", "1.1.1"}));
  MaskSpec lf = windowed(MaskKind::Longformer, 0, 0);
  lf.global_tokens = {1};
  EXPECT_EQ(rows(lf, 4, 4), (S{"11..", "1111", ".11.", ".1.1"}));
  lf.causal = true;  // the causal form: no key after the query, global or not
  EXPECT_EQ(rows(lf, 4, 4), (S{"1...", "11..", ".11.", ".1.1"}));
  MaskSpec packed;
  packed.cu_seqlens = {{0, 2, 4}};
  EXPECT_EQ(rows(packed, 4, 4), (S{"11..", "11..", "..11", "..11"}));
  MaskSpec pad;
  pad.key_lengths = {3};
  EXPECT_EQ(rows(pad, 2, 4), (S{"111.", "111."}));
  MaskSpec off = MaskSpec::causal_mask();
  off.q_offset = 2;  // queries at positions 2, 3; keys at 0..3
  EXPECT_EQ(rows(off, 2, 4), (S{"111.", "1111"}));
}

TEST(AttentionMask, TileClassesAndReachAgreeWithBruteForce) {
  const int64_t nq = 70, nk = 70;
  for (const auto& [name, m] : specs()) {
    const MaskPlan plan(m, 2, nq, nk);
    const int64_t qo = m.q_offset, ko = m.k_offset;
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t size_q : {1, 5, 16})
        for (int64_t size_k : {1, 7, 16})
          for (int64_t i0 = 0; i0 < nq; i0 += 3)
            for (int64_t j0 = 0; j0 < nk; j0 += 4) {
              const int64_t i1 = std::min(nq, i0 + size_q), j1 = std::min(nk, j0 + size_k);
              int64_t hits = 0;
              for (int64_t i = i0; i < i1; ++i)
                for (int64_t j = j0; j < j1; ++j) hits += plan.attends(b, qo + i, ko + j) ? 1 : 0;
              const TileClass c = plan.classify(b, qo + i0, qo + i1, ko + j0, ko + j1);
              const std::string at = name + " b=" + std::to_string(b) + " tile q[" + std::to_string(i0) + "," +
                                     std::to_string(i1) + ") k[" + std::to_string(j0) + "," + std::to_string(j1) + ")";
              if (c == TileClass::Empty) ASSERT_EQ(hits, 0) << at;
              if (c == TileClass::Full) ASSERT_EQ(hits, (i1 - i0) * (j1 - j0)) << at;
              int64_t kf, kl, qf, ql;
              plan.key_reach(b, qo + i0, qo + i1, kf, kl);
              plan.query_reach(b, ko + j0, ko + j1, qf, ql);
              for (int64_t i = i0; i < i1; ++i)
                for (int64_t j = 0; j < nk; ++j)
                  if (plan.attends(b, qo + i, ko + j)) ASSERT_TRUE(ko + j >= kf && ko + j < kl) << at << " key reach";
              for (int64_t j = j0; j < j1; ++j)
                for (int64_t i = 0; i < nq; ++i)
                  if (plan.attends(b, qo + i, ko + j)) ASSERT_TRUE(qo + i >= qf && qo + i < ql) << at << " query reach";
            }
  }
}

TEST(AttentionMask, PartialTileFillMatchesThePairRule) {
  for (const auto& [name, m] : specs()) {
    const MaskPlan plan(m, 2, 70, 70);
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t i0 : {0, 13, 50})
        for (int64_t j0 : {0, 9, 40}) {
          const int64_t nq = 20, nk = 17, ld = 24;
          std::vector<float> tile(static_cast<size_t>(nk * ld), 1.0f);
          const int64_t q0 = m.q_offset + i0, k0 = m.k_offset + j0;
          plan.mask_tile(b, q0, nq, k0, nk, tile.data(), ld);
          for (int64_t j = 0; j < nk; ++j)
            for (int64_t i = 0; i < nq; ++i)
              ASSERT_EQ(tile[static_cast<size_t>(j * ld + i)] == 1.0f, plan.attends(b, q0 + i, k0 + j))
                  << name << " b=" << b << " q " << q0 + i << " k " << k0 + j;
        }
  }
}

TEST(AttentionMask, PairCountEqualsDenseMaskSum) {
  for (const auto& [name, m] : specs()) {
    double dense = 0;
    for (double x : ops::dense_mask(m, 2, 70, 70).to_vector()) dense += x;
    EXPECT_EQ(ops::attended_pairs(m, 2, 70, 70), static_cast<int64_t>(dense)) << name;
  }
}

// A ring rank sees one block of queries and keys: its BigBird draw must be the full sequence's.
TEST(AttentionMask, BigBirdRandomBlocksAgreeAcrossBlocksOfTheSequence) {
  MaskSpec m = windowed(MaskKind::BigBird, 0, 0);
  m.block_size = 8;
  m.random_blocks = 2;
  m.seed = 11;
  const int64_t n = 64;
  const auto full = ops::dense_mask(m, 1, n, n).to_vector();
  for (int64_t i = 0; i < n; ++i) {  // with a zero window, each row sees exactly 2 whole key blocks
    int64_t whole_blocks = 0;
    for (int64_t kb = 0; kb < n / 8; ++kb) {
      bool all = true;
      for (int64_t j = kb * 8; j < kb * 8 + 8; ++j) all = all && full[static_cast<size_t>(i * n + j)] != 0;
      whole_blocks += all ? 1 : 0;
    }
    EXPECT_EQ(whole_blocks, 2) << "row " << i;
  }
  MaskSpec part = m;
  part.q_offset = 16;
  part.k_offset = 32;
  part.seq_len = n;
  const auto block = ops::dense_mask(part, 1, 16, 24).to_vector();
  for (int64_t i = 0; i < 16; ++i)
    for (int64_t j = 0; j < 24; ++j)
      ASSERT_EQ(block[static_cast<size_t>(i * 24 + j)], full[static_cast<size_t>((16 + i) * n + 32 + j)]);
  MaskSpec other = m;
  other.seed = 12;
  EXPECT_NE(ops::dense_mask(other, 1, n, n).to_vector(), full);
}

TEST(AttentionMask, PatternNamesRoundTrip) {
  for (const char* name : {"full", "causal", "sliding", "dilated", "longformer", "bigbird"})
    EXPECT_STREQ(mask_pattern_name(mask_from_pattern_name(name)), name);
  EXPECT_EQ(mask_from_pattern_name("none").kind, MaskKind::None);
  EXPECT_FALSE(mask_from_pattern_name("none").causal);
  // Causal is a flag on top of a kind, never a kind of its own.
  EXPECT_EQ(mask_from_pattern_name("causal").kind, MaskKind::None);
  EXPECT_TRUE(mask_from_pattern_name("causal").causal);
  MaskSpec causal_sliding = MaskSpec::sliding(4);
  causal_sliding.causal = true;
  EXPECT_STREQ(mask_pattern_name(causal_sliding), "sliding");
  EXPECT_THROW(mask_from_pattern_name("diagonal"), ValueError);
}

// The kernels with 16 x 8 and 24 x 40 tiles (every tile class, many skipped tiles) against the
// default tiling in float64.
TEST(AttentionMask, SmallTilesGiveTheSameResultAsTheDefaultTiles) {
  const double eps = std::numeric_limits<double>::epsilon();
  for (const auto& [name, m] : specs()) {
    const int64_t b = 2, hq = 4, hkv = 2, n = 70, d = 8;
    Tensor q = Tensor::uniform({b, hq, n, d}, 1, -1, 1, DType::F64), k = Tensor::uniform({b, hkv, n, d}, 2, -1, 1, DType::F64);
    Tensor v = Tensor::uniform({b, hkv, n, d}, 3, -1, 1, DType::F64), go = Tensor::uniform({b, hq, n, d}, 4, -1, 1, DType::F64);
    Tensor glse = Tensor::uniform({b, hq, n}, 5, -1, 1, DType::F64);
    Tensor ql = q.detach(), kl = k.detach(), vl = v.detach();
    for (Tensor* t : {&ql, &kl, &vl}) t->set_requires_grad(true);
    const ops::AttentionOutput ref = ops::attention(ql, kl, vl, m);
    const std::vector<Tensor> g = autograd::grad({ref.o, ref.lse}, {go, glse}, {ql, kl, vl});
    for (auto [bq, bk] : {std::pair<int64_t, int64_t>{16, 8}, {24, 40}}) {
      Tensor o = Tensor::empty(q.shape(), DType::F64), lse = Tensor::empty({b, hq, n}, DType::F64);
      Tensor dq = Tensor::empty(q.shape(), DType::F64), dk = Tensor::empty(k.shape(), DType::F64);
      Tensor dv = Tensor::empty(v.shape(), DType::F64);
      cpu::AttentionParams p;
      p.q = q.raw_data(), p.k = k.raw_data(), p.v = v.raw_data(), p.o = o.raw_data(), p.lse = lse.raw_data();
      p.d_o = go.raw_data(), p.d_lse = glse.raw_data(), p.dq = dq.raw_data(), p.dk = dk.raw_data(), p.dv = dv.raw_data();
      p.q_batch_stride = p.o_batch_stride = p.do_batch_stride = p.dq_batch_stride = hq * n * d;
      p.k_batch_stride = p.v_batch_stride = p.dk_batch_stride = p.dv_batch_stride = hkv * n * d;
      p.q_head_stride = p.k_head_stride = p.v_head_stride = p.o_head_stride = p.do_head_stride = n * d;
      p.dq_head_stride = p.dk_head_stride = p.dv_head_stride = n * d;
      p.q_row_stride = p.k_row_stride = p.v_row_stride = p.o_row_stride = p.do_row_stride = d;
      p.dq_row_stride = p.dk_row_stride = p.dv_row_stride = d;
      p.lse_batch_stride = hq * n;
      p.lse_head_stride = n;
      p.batch = b, p.q_heads = hq, p.kv_heads = hkv, p.q_len = n, p.k_len = n, p.head_dim = d;
      p.scale = 1.0 / std::sqrt(static_cast<double>(d));
      p.mask = &m;
      p.block_q = bq;
      p.block_k = bk;
      cpu::attention_forward<double>(p);
      cpu::attention_backward<double>(p);
      const std::string at = name + " tiles " + std::to_string(bq) + "x" + std::to_string(bk);
      for (auto [got, want, what] : {std::tuple{o, ref.o, "o"}, {lse, ref.lse, "lse"}, {dq, g[0], "dq"},
                                     {dk, g[1], "dk"}, {dv, g[2], "dv"}}) {
        const auto x = got.to_vector(), y = want.to_vector();
        for (size_t i = 0; i < x.size(); ++i) {
          if (std::isinf(y[i])) {
            ASSERT_EQ(x[i], y[i]) << at << " " << what << " " << i;
            continue;
          }
          // Sums of at most 2 (D + Nk + Nq Hq/Hkv) products, rounded in float64.
          ASSERT_NEAR(x[i], y[i], 2.0 * (d + n + 2 * n) * eps * (1.0 + std::abs(y[i]))) << at << " " << what << " " << i;
        }
      }
    }
  }
}

}  // namespace
}  // namespace strand
