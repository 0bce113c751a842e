// The CUDA kernels of training's losses and updates against the CPU kernels on the same random
// inputs, in float32 and float64: fused cross-entropy, logit distillation, dropout (bit for bit:
// the same Philox words), AdamW, gradient clipping, and concat's block copies. Without a GPU
// every test says "skipped: no GPU".
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "framework/backend/adamw.h"
#include "framework/backend/clip.h"
#include "framework/backend/cross_entropy.h"
#include "framework/backend/distill_loss.h"
#include "framework/backend/dropout.h"
#include "framework/backend/join.h"
#include "tests/framework/backend/cuda_ops_support.h"

namespace strand {
namespace {

using cuda_test::DeviceBuffer;
using cuda_test::expect_bitwise;
using cuda_test::expect_close;
using cuda_test::gpu;
using cuda_test::random_vector;

template <class T>
DType dt() {
  return cuda_test::dtype_of_t<T>();
}

// ---- losses ----

template <class T>
void check_cross_entropy() {
  const int64_t N = 11, V = 1500, ld = 1520;  // rows padded: ld > V
  const std::vector<T> logits = random_vector<T>(static_cast<size_t>(N * ld), 19, -6.0, 6.0);
  std::vector<int32_t> targets(static_cast<size_t>(N));
  for (size_t r = 0; r < targets.size(); ++r) targets[r] = static_cast<int32_t>((r * 131) % V);
  targets[4] = targets[7] = -100;  // ignored rows
  const DeviceBuffer dlogits(logits), dtargets(targets), dlse(static_cast<size_t>(N) * sizeof(T)),
      dd(static_cast<size_t>(N * V) * sizeof(T));
  backend::CrossEntropyParams p;
  p.dtype = dt<T>();
  p.ld = ld;
  p.N = N;
  p.V = V;
  p.op = backend::CrossEntropyOp::Forward;
  std::vector<T> lse(static_cast<size_t>(N));
  std::vector<double> loss(static_cast<size_t>(N)), loss_gpu(static_cast<size_t>(N));
  p.logits = logits.data();
  p.targets = targets.data();
  p.lse = lse.data();
  p.row_loss = loss.data();
  backend::cross_entropy(p);
  p.device = gpu();
  p.logits = dlogits.get();
  p.targets = dtargets.as<int32_t>();
  p.lse = dlse.get();
  p.row_loss = loss_gpu.data();
  backend::cross_entropy(p);
  expect_close(dlse.read<T>(static_cast<size_t>(N)), lse, 64, "cross_entropy lse");
  // Row losses are double, from exponentials of the dtype: so many roundings of the dtype.
  expect_close(loss_gpu, loss, 64 * testing::dtype_eps(dt<T>()) / testing::kEpsF64, "cross_entropy row loss");

  // Backward from the CPU's lse on both sides.
  const DeviceBuffer clse(lse);
  std::vector<T> d(static_cast<size_t>(N * V));
  p.device = Device::cpu();
  p.op = backend::CrossEntropyOp::Backward;
  p.scale = 1.0 / 9;
  p.logits = logits.data();
  p.targets = targets.data();
  p.lse = lse.data();
  p.dlogits = d.data();
  backend::cross_entropy(p);
  p.device = gpu();
  p.logits = dlogits.get();
  p.targets = dtargets.as<int32_t>();
  p.lse = clse.get();
  p.dlogits = dd.get();
  backend::cross_entropy(p);
  expect_close(dd.read<T>(d.size()), d, 32, "cross_entropy backward");
}

TEST(CudaOps, CrossEntropyForwardBackward) {
  if (device_count(DeviceType::CUDA) == 0) GTEST_SKIP() << "skipped: no GPU";
  check_cross_entropy<float>();
  check_cross_entropy<double>();
}

TEST(CudaOps, CrossEntropyCheckTargets) {
  if (device_count(DeviceType::CUDA) == 0) GTEST_SKIP() << "skipped: no GPU";
  const std::vector<int32_t> targets{1, -100, 4, 5, -3, -100};
  const DeviceBuffer dtargets(targets);
  backend::CrossEntropyParams p;
  p.device = gpu();
  p.op = backend::CrossEntropyOp::CheckTargets;
  p.targets = dtargets.as<int32_t>();
  p.N = 6;
  p.V = 5;
  int64_t bad = 0, count = 0;
  int32_t bad_target = 0;
  p.first_bad = &bad;
  p.bad_target = &bad_target;
  p.count = &count;
  backend::cross_entropy(p);
  EXPECT_EQ(bad, 3);
  EXPECT_EQ(bad_target, 5);
  EXPECT_EQ(count, 4);
}

template <class T>
void check_distill() {
  const int64_t N = 6, V = 900, ld = 910;
  const std::vector<T> s = random_vector<T>(static_cast<size_t>(N * ld), 20, -4.0, 4.0);
  const std::vector<T> t = random_vector<T>(static_cast<size_t>(N * ld), 21, -4.0, 4.0);
  std::vector<int32_t> targets{1, 2, -100, 3, 4, 5};
  const DeviceBuffer ds(s), dtt(t), dtargets(targets), dls(static_cast<size_t>(N) * sizeof(T)),
      dlt(static_cast<size_t>(N) * sizeof(T)), dd(static_cast<size_t>(N * V) * sizeof(T));
  backend::DistillLossParams p;
  p.dtype = dt<T>();
  p.ld = ld;
  p.N = N;
  p.V = V;
  p.temperature = 2.0;
  std::vector<T> ls(static_cast<size_t>(N)), lt(static_cast<size_t>(N));
  std::vector<double> loss(static_cast<size_t>(N)), loss_gpu(static_cast<size_t>(N));
  p.student = s.data();
  p.teacher = t.data();
  p.targets = targets.data();
  p.lse_student = ls.data();
  p.lse_teacher = lt.data();
  p.row_loss = loss.data();
  backend::distill_loss(p);
  p.device = gpu();
  p.student = ds.get();
  p.teacher = dtt.get();
  p.targets = dtargets.as<int32_t>();
  p.lse_student = dls.get();
  p.lse_teacher = dlt.get();
  p.row_loss = loss_gpu.data();
  backend::distill_loss(p);
  expect_close(dls.read<T>(static_cast<size_t>(N)), ls, 16, "distill lse student");
  expect_close(dlt.read<T>(static_cast<size_t>(N)), lt, 16, "distill lse teacher");
  expect_close(loss_gpu, loss, 1e6, "distill row loss");  // double sums in another order

  const DeviceBuffer cls(ls), clt(lt);
  std::vector<T> d(static_cast<size_t>(N * V));
  p.device = Device::cpu();
  p.op = backend::DistillLossOp::Backward;
  p.scale = 0.2;
  p.student = s.data();
  p.teacher = t.data();
  p.targets = targets.data();
  p.lse_student = ls.data();
  p.lse_teacher = lt.data();
  p.dstudent = d.data();
  backend::distill_loss(p);
  p.device = gpu();
  p.student = ds.get();
  p.teacher = dtt.get();
  p.targets = dtargets.as<int32_t>();
  p.lse_student = cls.get();
  p.lse_teacher = clt.get();
  p.dstudent = dd.get();
  backend::distill_loss(p);
  expect_close(dd.read<T>(d.size()), d, 16, "distill backward");
}

TEST(CudaOps, DistillLossForwardBackward) {
  if (device_count(DeviceType::CUDA) == 0) GTEST_SKIP() << "skipped: no GPU";
  check_distill<float>();
  check_distill<double>();
}

// ---- dropout: the same Philox words, so the same masks and values bit for bit ----

template <class T>
void check_dropout() {
  const int64_t n = 10001;
  const std::vector<T> x = random_vector<T>(static_cast<size_t>(n), 22);
  const DeviceBuffer dx(x), dy(static_cast<size_t>(n) * sizeof(T));
  backend::DropoutParams p;
  p.dtype = dt<T>();
  p.n = n;
  p.p = 0.3;
  p.seed = 0x1234567890ull;
  p.offset = 4099;  // not a multiple of 4: the first counter is shared with a previous call
  std::vector<T> y(static_cast<size_t>(n));
  p.x = x.data();
  p.y = y.data();
  backend::dropout(p);
  p.device = gpu();
  p.x = dx.get();
  p.y = dy.get();
  backend::dropout(p);
  expect_bitwise(dy.read<T>(y.size()), y, "dropout");

  // Row offsets (host memory), in place on the GPU.
  const int64_t rows = 7, row_len = 999;
  const std::vector<T> xr = random_vector<T>(static_cast<size_t>(rows * row_len), 23);
  const std::vector<uint64_t> offsets{0, 5, 1001, 77777, 3, 123456789, 2};
  std::vector<T> yr(xr.size());
  const DeviceBuffer dxr(xr);
  p.device = Device::cpu();
  p.n = rows * row_len;
  p.rows = rows;
  p.row_len = row_len;
  p.row_offsets = offsets.data();
  p.x = xr.data();
  p.y = yr.data();
  backend::dropout(p);
  p.device = gpu();
  p.x = dxr.get();
  p.y = dxr.get();
  backend::dropout(p);
  expect_bitwise(dxr.read<T>(yr.size()), yr, "dropout with row offsets");
}

TEST(CudaOps, DropoutSameMaskAsCpu) {
  if (device_count(DeviceType::CUDA) == 0) GTEST_SKIP() << "skipped: no GPU";
  check_dropout<float>();
  check_dropout<double>();
}

// ---- optimiser and clipping ----

template <class T>
void check_adamw() {
  const int64_t n = 5000;
  std::vector<T> param = random_vector<T>(static_cast<size_t>(n), 24), m = random_vector<T>(static_cast<size_t>(n), 25);
  std::vector<T> v = random_vector<T>(static_cast<size_t>(n), 26, 0.0, 1.0);
  const std::vector<T> g = random_vector<T>(static_cast<size_t>(n), 27);
  const DeviceBuffer dparam(param), dm(m), dv(v), dg(g);
  backend::AdamWParams p;
  p.dtype = dt<T>();
  p.n = n;
  p.lr = 3e-3;
  p.weight_decay = 0.1;
  p.bias_correction1 = 1 - std::pow(0.9, 3);
  p.bias_correction2 = 1 - std::pow(0.999, 3);
  p.param = param.data();
  p.grad = g.data();
  p.m = m.data();
  p.v = v.data();
  backend::adamw_update(p);
  p.device = gpu();
  p.param = dparam.get();
  p.grad = dg.get();
  p.m = dm.get();
  p.v = dv.get();
  backend::adamw_update(p);
  // Fused multiply-adds may round differently from the CPU's: a few roundings of the dtype.
  expect_close(dparam.read<T>(param.size()), param, 16, "adamw param");
  expect_close(dm.read<T>(m.size()), m, 8, "adamw m");
  expect_close(dv.read<T>(v.size()), v, 8, "adamw v");
}

TEST(CudaOps, AdamWUpdate) {
  if (device_count(DeviceType::CUDA) == 0) GTEST_SKIP() << "skipped: no GPU";
  check_adamw<float>();
  check_adamw<double>();
}

template <class T>
void check_clip() {
  const int64_t n = 100003;  // several blocks of 2^14 and a partial one
  std::vector<T> x = random_vector<T>(static_cast<size_t>(n), 28);
  const DeviceBuffer dx(x);
  backend::ClipParams p;
  p.dtype = dt<T>();
  p.n = n;
  p.op = backend::ClipOp::SumSquares;
  double want = 0, got = 0;
  p.x = x.data();
  p.sum = &want;
  backend::clip_grad(p);
  p.device = gpu();
  p.x = dx.get();
  p.sum = &got;
  backend::clip_grad(p);
  EXPECT_NEAR(got, want, 1e-12 * want) << "clip sum of squares";
  p.op = backend::ClipOp::Scale;
  p.scale = 0.37;
  backend::clip_grad(p);
  p.device = Device::cpu();
  p.x = x.data();
  backend::clip_grad(p);
  expect_bitwise(dx.read<T>(x.size()), x, "clip scale");
}

TEST(CudaOps, ClipSumOfSquaresAndScale) {
  if (device_count(DeviceType::CUDA) == 0) GTEST_SKIP() << "skipped: no GPU";
  check_clip<float>();
  check_clip<double>();
}

TEST(CudaOps, CopyBlocksPitchedAndOverlapping) {
  if (device_count(DeviceType::CUDA) == 0) GTEST_SKIP() << "skipped: no GPU";
  std::vector<uint8_t> src(4000);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(i * 37 + 11);
  const DeviceBuffer dsrc(src);
  // Pitched (strides >= row bytes), a single row, and source rows that overlap (stride < row bytes).
  const int64_t cases[][4] = {{100, 64, 37, 30}, {0, 0, 1, 999}, {50, 20, 40, 45}};
  for (const auto& c : cases) {
    const int64_t dst_stride = c[0] ? c[0] : c[3], src_stride = c[1], rows = c[2], row_bytes = c[3];
    const size_t dst_bytes = static_cast<size_t>((rows - 1) * dst_stride + row_bytes);
    std::vector<uint8_t> want(dst_bytes, 0);
    const DeviceBuffer ddst(want);
    backend::CopyBlocksParams p;
    p.dst_stride = dst_stride;
    p.src_stride = src_stride;
    p.rows = rows;
    p.row_bytes = row_bytes;
    p.dst = want.data();
    p.src = src.data();
    backend::copy_blocks(p);
    p.device = gpu();
    p.dst = ddst.get();
    p.src = dsrc.get();
    backend::copy_blocks(p);
    expect_bitwise(ddst.read<uint8_t>(dst_bytes), want, "copy_blocks");
  }
}

}  // namespace
}  // namespace strand
