// What the sequence-parallel attention tests share: one global attention problem with its
// one-rank reference (o, lse and the gradients of q, k, v), and the check of one rank's rows of
// a parallel result against it, with tolerances from the dtype.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "framework/autograd/engine.h"
#include "framework/ops/attention.h"
#include "parallel/comm/group.h"
#include "parallel/layout.h"
#include "support/tolerance.h"

namespace strand::testing {

// got against the reference rows of this rank. Each value is a sum of at most `terms` products,
// rounded once per term and again by each lse merge (`merges`: one per key block a row sees), so
// the error is bounded by a few eps per term of the magnitude involved (the value's own, or the
// tensor's typical one where terms cancel). bfloat16 results are float32 computations rounded
// once on each side: up to 2^-8 relative each.
inline void expect_close(const Tensor& got, const Tensor& ref_shard, int64_t terms, const std::string& what,
                         int64_t merges = parallel::world().size()) {
  ASSERT_EQ(got.shape(), ref_shard.shape()) << what;
  ASSERT_EQ(got.dtype(), ref_shard.dtype()) << what;
  const std::vector<double> g = got.to_vector(), r = ref_shard.to_vector();
  const double eps = strand::testing::dtype_eps(ref_shard.dtype());
  const double rounding = ref_shard.dtype() == DType::BF16 ? std::ldexp(1.0, -7) : 0.0;
  double typical = 0.0;
  int64_t finite = 0;
  for (double x : r)
    if (std::isfinite(x)) typical += std::abs(x), ++finite;
  typical = finite ? typical / static_cast<double>(finite) : 0.0;
  const double rel = 8.0 * eps * static_cast<double>(terms + merges);
  for (size_t i = 0; i < g.size(); ++i) {
    ASSERT_FALSE(std::isnan(g[i])) << what << " element " << i;
    if (std::isinf(r[i])) {
      EXPECT_EQ(g[i], r[i]) << what << " element " << i;
      continue;
    }
    EXPECT_NEAR(g[i], r[i], rel * (std::abs(r[i]) + typical) + rounding * std::abs(r[i]))
        << what << " element " << i;
  }
}

struct ProblemShape {
  int64_t batch = 2, q_heads = 2, kv_heads = 2, seq = 0, d = 16;  // seq: the whole sequence
  DType dtype = DType::F32;
  uint64_t seed = 1;
  // bfloat16: the kernel path (STRAND_ATTENTION_ISA) of the one-rank reference and of the
  // parallel path under test (Bf16IsaScope around it). "generic" widens bf16 to float32 exactly
  // and runs the float32 kernels, so the tolerances above hold for any split of the keys; the
  // AVX512-BF16 tiles ("auto" on CPUs that have them) also round P and dS to bf16 relative to
  // each key block's running max, which differs between a ring's segments and one rank's
  // blocks (ring_mpitest.cpp checks the tiles with a bound of their own). Ulysses without
  // repeated KV heads runs one rank's computation on whole heads, so it matches under "auto" too.
  const char* bf16_isa = "generic";
};

// Sets STRAND_ATTENTION_ISA for bfloat16 problems while it lives, and restores it.
class Bf16IsaScope {
 public:
  Bf16IsaScope(DType dtype, const char* isa) : active_(dtype == DType::BF16) {
    if (!active_) return;
    const char* old = std::getenv("STRAND_ATTENTION_ISA");
    had_ = old != nullptr;
    if (had_) saved_ = old;
    setenv("STRAND_ATTENTION_ISA", isa, 1);
  }
  ~Bf16IsaScope() {
    if (!active_) return;
    if (had_) setenv("STRAND_ATTENTION_ISA", saved_.c_str(), 1);
    else unsetenv("STRAND_ATTENTION_ISA");
  }
  Bf16IsaScope(const Bf16IsaScope&) = delete;
  Bf16IsaScope& operator=(const Bf16IsaScope&) = delete;

 private:
  bool active_, had_ = false;
  std::string saved_;
};

// Random global q, k, v [B, H, N, D] and output gradients (the same on every rank: seeded), and
// one-rank ops::attention with its backward: q.grad(), k.grad(), v.grad() hold the reference.
struct AttentionProblem {
  ProblemShape shape;
  Tensor q, k, v, d_o, d_lse;
  ops::AttentionOutput ref;

  AttentionProblem(const ProblemShape& s, const MaskSpec& mask) : shape(s) {
    q = Tensor::randn({s.batch, s.q_heads, s.seq, s.d}, s.seed, s.dtype);
    k = Tensor::randn({s.batch, s.kv_heads, s.seq, s.d}, s.seed + 1, s.dtype);
    v = Tensor::randn({s.batch, s.kv_heads, s.seq, s.d}, s.seed + 2, s.dtype);
    d_o = Tensor::randn({s.batch, s.q_heads, s.seq, s.d}, s.seed + 3, s.dtype);
    const DType lse_dtype = s.dtype == DType::BF16 ? DType::F32 : s.dtype;  // lse of bfloat16 inputs is float32
    d_lse = Tensor::randn({s.batch, s.q_heads, s.seq}, s.seed + 4, lse_dtype);
    for (Tensor* t : {&q, &k, &v}) t->set_requires_grad(true);
    // The reference runs the bf16 path the parallel one does (ProblemShape::bf16_isa).
    const Bf16IsaScope isa(s.dtype, s.bf16_isa);
    ref = ops::attention(q, k, v, mask);
    autograd::backward({ref.o, ref.lse}, {d_o, d_lse});
  }
};

// One rank's rows of a problem: its q, k, v (leaves that require grad) and the check of a
// parallel result computed from them.
struct RankRows {
  const AttentionProblem& problem;
  const parallel::SequenceLayout& layout;
  int rank;
  Tensor q, k, v;

  RankRows(const AttentionProblem& p, const parallel::SequenceLayout& l, int r) : problem(p), layout(l), rank(r) {
    q = mine(p.q);
    k = mine(p.k);
    v = mine(p.v);
    for (Tensor* t : {&q, &k, &v}) t->set_requires_grad(true);
  }
  Tensor mine(const Tensor& t) const { return layout.shard(t.detach(), rank, 2); }

  // Back-propagates this rank's rows of the output gradients through `got` and compares o, lse,
  // dq, dk, dv with the reference rows.
  void backward_and_check(const ops::AttentionOutput& got, int64_t merges = parallel::world().size()) const {
    autograd::backward({got.o, got.lse}, {mine(problem.d_o), mine(problem.d_lse)});
    const ProblemShape& s = problem.shape;
    // o and dq sum over the keys, dk and dv over the queries of a kv-head group; the gradients
    // add a D-term product (dO . v) inside each summed term.
    const int64_t keys = s.seq, queries = s.seq * (s.q_heads / s.kv_heads);
    expect_close(got.o, mine(problem.ref.o), keys, "o", merges);
    expect_close(got.lse, mine(problem.ref.lse), keys, "lse", merges);
    expect_close(q.grad(), mine(problem.q.grad()), keys + s.d, "dq", merges);
    expect_close(k.grad(), mine(problem.k.grad()), queries + s.d, "dk", merges);
    expect_close(v.grad(), mine(problem.v.grad()), queries, "dv", merges);
  }
};

}  // namespace strand::testing
