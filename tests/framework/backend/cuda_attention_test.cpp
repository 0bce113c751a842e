// The CUDA attention kernels against the CPU kernels through the segment step (the entry points
// ring and Ulysses use): o, lse, dq, dk, dv for causal, sliding-window, offset (ring segment),
// GQA and odd-length calls in float32, float64 and bf16; the merge and row adds; and the mask
// patterns CUDA refuses, by name (that check needs no GPU, only a build with CUDA).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "framework/backend/registry.h"
#include "framework/core/device_runtime.h"
#include "framework/core/error.h"
#include "framework/core/tensor.h"
#include "framework/ops/attention_contract.h"
#include "support/tolerance.h"

namespace strand {
namespace {

using testing::kEpsF32;
using testing::kEpsF64;

struct Case {
  int64_t B, Hq, Hkv, Nq, Nk, D;
  MaskSpec mask;
  DType dtype = DType::F32;
  bool with_dlse = true;
};

// Relative-to-the-largest tolerance per dtype: float32 and float64 sum in their own precision on
// both devices (the CPU's exp is a vectorised approximation within a few ulp); bf16 inputs are
// the same bf16 values on both, but the CPU's bf16 path rounds the probabilities to bf16 before
// P . V, the CUDA kernel keeps them in float32.
double tolerance(DType t) { return t == DType::F64 ? 1e3 * kEpsF64 : t == DType::BF16 ? 2e-2 : 200 * kEpsF32; }

// Checks got against want element by element: equal infinities, else |got - want| <= tol * scale
// with scale the largest finite |want| (at least 1).
void expect_close(const Tensor& got_t, const Tensor& want_t, double tol, const std::string& what) {
  const std::vector<double> got = got_t.to_vector(), want = want_t.to_vector();
  ASSERT_EQ(got.size(), want.size()) << what;
  double scale = 1;
  for (double w : want)
    if (std::isfinite(w)) scale = std::max(scale, std::abs(w));
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isinf(want[i]) || std::isinf(got[i])) {
      ASSERT_EQ(got[i], want[i]) << what << " at " << i;
      continue;
    }
    ASSERT_FALSE(std::isnan(got[i])) << what << " at " << i;
    const double err = std::abs(got[i] - want[i]);
    if (err > worst) worst = err, at = i;
  }
  EXPECT_LE(worst, tol * scale) << what << ": worst error at " << at << " (got " << got[at] << ", want "
                                << want[at] << ")";
}

struct Run {
  Tensor o, lse, dq, dk, dv;
};

// Forward then backward of one case on `device`, from inputs made on the CPU.
Run run_case(const Case& c, const std::vector<Tensor>& inputs, Device device) {
  const Tensor q = inputs[0].copy_as(c.dtype, device), k = inputs[1].copy_as(c.dtype, device),
               v = inputs[2].copy_as(c.dtype, device), d_o = inputs[3].copy_as(c.dtype, device);
  const DType acc = ops::attention_compute_dtype(c.dtype);
  const Tensor d_lse = c.with_dlse ? inputs[4].copy_as(acc, device) : Tensor();
  const double scale = ops::attention_scale(0, c.D);
  Run r;
  r.o = Tensor::empty({c.B, c.Hq, c.Nq, c.D}, acc, device);
  r.lse = Tensor::empty({c.B, c.Hq, c.Nq}, acc, device);
  ops::attention_segment_forward(q, k, v, c.mask, scale, r.o, r.lse);
  r.dq = Tensor::empty({c.B, c.Hq, c.Nq, c.D}, acc, device);
  r.dk = Tensor::empty({c.B, c.Hkv, c.Nk, c.D}, acc, device);
  r.dv = Tensor::empty({c.B, c.Hkv, c.Nk, c.D}, acc, device);
  ops::attention_segment_backward(q, k, v, r.o, r.lse, d_o, d_lse, c.mask, scale, {r.dq, r.dk, r.dv});
  return r;
}

void check_case(const Case& c, uint64_t seed) {
  // Inputs drawn once in float64 on the CPU, then rounded to the case's dtype on each side alike.
  const std::vector<Tensor> inputs = {
      Tensor::randn({c.B, c.Hq, c.Nq, c.D}, seed, DType::F64), Tensor::randn({c.B, c.Hkv, c.Nk, c.D}, seed + 1, DType::F64),
      Tensor::randn({c.B, c.Hkv, c.Nk, c.D}, seed + 2, DType::F64), Tensor::randn({c.B, c.Hq, c.Nq, c.D}, seed + 3, DType::F64),
      Tensor::randn({c.B, c.Hq, c.Nq}, seed + 4, DType::F64, 0.5)};
  const Run want = run_case(c, inputs, Device::cpu());
  const Run got = run_case(c, inputs, Device::cuda(0));
  const double tol = tolerance(c.dtype);
  expect_close(got.o, want.o, tol, "o");
  expect_close(got.lse, want.lse, tol, "lse");
  expect_close(got.dq, want.dq, tol, "dq");
  expect_close(got.dk, want.dk, tol, "dk");
  expect_close(got.dv, want.dv, tol, "dv");
}

#define SKIP_WITHOUT_GPU() \
  if (device_count(DeviceType::CUDA) == 0) GTEST_SKIP() << "skipped: no GPU"

TEST(CudaAttention, CausalMatchesCpu) {
  SKIP_WITHOUT_GPU();
  check_case({2, 4, 4, 77, 77, 64, MaskSpec::causal_mask()}, 10);
}

TEST(CudaAttention, FullMaskOddLengthsAndHeadDim) {
  SKIP_WITHOUT_GPU();
  check_case({1, 3, 3, 37, 53, 48, MaskSpec{}}, 20);
  check_case({1, 2, 2, 1, 1, 7, MaskSpec{}}, 21);
  check_case({2, 1, 1, 33, 65, 128, MaskSpec::causal_mask()}, 22);
}

TEST(CudaAttention, GroupedQueryHeadsMatchCpu) {
  SKIP_WITHOUT_GPU();
  check_case({2, 8, 2, 50, 50, 32, MaskSpec::causal_mask()}, 30);
  check_case({1, 6, 1, 41, 29, 64, MaskSpec{}}, 31);
}

TEST(CudaAttention, SlidingWindowMatchesCpu) {
  SKIP_WITHOUT_GPU();
  MaskSpec causal_window = MaskSpec::sliding(13);
  causal_window.causal = true;
  check_case({2, 4, 2, 90, 90, 64, causal_window}, 40);
  check_case({1, 2, 2, 45, 70, 64, MaskSpec::sliding(5, 7)}, 41);
}

// A ring segment: queries and keys are blocks of a longer sequence at global offsets; the first
// queries of the block see no key (lse -inf, o 0) when the keys start after them.
TEST(CudaAttention, OffsetsOfARingSegmentMatchCpu) {
  SKIP_WITHOUT_GPU();
  MaskSpec m = MaskSpec::causal_mask();
  m.q_offset = 40, m.k_offset = 10, m.seq_len = 128;
  check_case({1, 4, 2, 33, 50, 64, m}, 50);
  MaskSpec later = MaskSpec::causal_mask();
  later.q_offset = 0, later.k_offset = 20, later.seq_len = 64;
  check_case({1, 2, 2, 40, 30, 32, later}, 51);
  MaskSpec window = MaskSpec::sliding(16, 3);
  window.q_offset = 64, window.k_offset = 48, window.seq_len = 128;
  check_case({2, 2, 1, 31, 47, 64, window}, 52);
}

TEST(CudaAttention, Float64AndBf16MatchCpu) {
  SKIP_WITHOUT_GPU();
  Case f64{2, 4, 2, 45, 45, 64, MaskSpec::causal_mask(), DType::F64};
  check_case(f64, 60);
  Case bf16{2, 4, 2, 70, 70, 64, MaskSpec::causal_mask(), DType::BF16};
  check_case(bf16, 61);
  bf16.with_dlse = false;
  bf16.mask = MaskSpec::sliding(9);
  check_case(bf16, 62);
}

TEST(CudaAttention, MergeAndAddRowsMatchCpu) {
  SKIP_WITHOUT_GPU();
  const Shape rows{2, 3, 19, 40}, lse_shape{2, 3, 19};
  std::vector<double> lse1 = Tensor::randn(lse_shape, 71, DType::F64).to_vector();
  lse1[0] = -INFINITY;  // one part empty
  std::vector<double> lse2 = Tensor::randn(lse_shape, 72, DType::F64).to_vector();
  lse2[0] = lse2[5] = -INFINITY;  // row 0: both parts empty
  const std::vector<Tensor> host = {Tensor::randn(rows, 73), Tensor::from_vector(lse1, lse_shape),
                                    Tensor::randn(rows, 74), Tensor::from_vector(lse2, lse_shape)};
  std::vector<Tensor> out;
  for (Device dev : {Device::cpu(), Device::cuda(0)}) {
    const Tensor o1 = host[0].copy_as(DType::F32, dev), l1 = host[1].copy_as(DType::F32, dev);
    const Tensor o2 = host[2].copy_as(DType::F32, dev), l2 = host[3].copy_as(DType::F32, dev);
    const Tensor o = Tensor::empty(rows, DType::F32, dev), lse = Tensor::empty(lse_shape, DType::F32, dev);
    ops::attention_merge(o1, l1, o2, l2, o, lse);
    ops::attention_add_rows(o2, o1);  // o2 += o1
    out.insert(out.end(), {o, lse, o2});
  }
  expect_close(out[3], out[0], 200 * kEpsF32, "merged o");
  expect_close(out[4], out[1], 200 * kEpsF32, "merged lse");
  expect_close(out[5], out[2], 0, "added rows");
}

// The refusal happens before any memory is touched, so it is checked wherever CUDA is built in.
TEST(CudaAttention, RefusesMaskPatternsItDoesNotImplementByName) {
#ifndef STRAND_WITH_CUDA
  GTEST_SKIP() << "skipped: built without CUDA";
#else
  struct Refused {
    MaskSpec mask;
    std::string name;
  };
  MaskSpec dilated = MaskSpec::sliding(8);
  dilated.kind = MaskKind::Dilated;
  dilated.dilation = 2;
  MaskSpec longformer = MaskSpec::sliding(8);
  longformer.kind = MaskKind::Longformer;
  MaskSpec bigbird = MaskSpec::sliding(8);
  bigbird.kind = MaskKind::BigBird;
  MaskSpec padded = MaskSpec::causal_mask();
  padded.key_lengths = {10};
  MaskSpec packed = MaskSpec::causal_mask();
  packed.cu_seqlens = {{0, 8, 16}};
  for (const Refused& r : {Refused{dilated, "dilated"}, Refused{longformer, "longformer"},
                           Refused{bigbird, "bigbird"}, Refused{padded, "key_lengths"},
                           Refused{packed, "cu_seqlens"}}) {
    backend::AttentionForwardParams p;
    p.device = Device::cuda(0);
    p.batch = 1, p.q_heads = p.kv_heads = 1, p.q_len = p.k_len = 16, p.head_dim = 8, p.scale = 1;
    p.mask = &r.mask;
    try {
      backend::launch("attention_forward", p);
      ADD_FAILURE() << r.name << " was not refused";
    } catch (const DeviceError& e) {
      EXPECT_NE(std::string(e.what()).find(r.name), std::string::npos) << e.what();
    }
  }
#endif
}

}  // namespace
}  // namespace strand
