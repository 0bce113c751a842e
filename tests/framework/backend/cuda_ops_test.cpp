// The CUDA kernels of the model's forward and backward against the CPU kernels on the same
// random inputs, in float32 and float64: elementwise maps (strided) and broadcasting binaries,
// activation derivatives, axpy, row reductions, softmax, LayerNorm / RMSNorm, rope, embedding.
// cuda_train_ops_test.cpp has the losses, dropout, the optimiser and copies; cuda_gemm_ops_test.cpp
// the GEMM and the runtime.
// Without a GPU every test says "skipped: no GPU", except the registration check of a CUDA build.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "framework/backend/adamw.h"
#include "framework/backend/clip.h"
#include "framework/backend/cross_entropy.h"
#include "framework/backend/distill_loss.h"
#include "framework/backend/dropout.h"
#include "framework/backend/elementwise.h"
#include "framework/backend/embedding.h"
#include "framework/backend/gemm.h"
#include "framework/backend/join.h"
#include "framework/backend/norm.h"
#include "framework/backend/reduce.h"
#include "framework/backend/rope.h"
#include "framework/backend/softmax.h"
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

// ---- elementwise ----

template <class T>
void check_maps(bool transposed) {
  // A [3, 5, 7] buffer, contiguous or a view of a [7, 5, 3] buffer read transposed (strides 1, 3, 15).
  const Shape shape{3, 5, 7};
  const Shape strides = transposed ? Shape{1, 3, 15} : Shape{35, 7, 1};
  const size_t n = 105;
  const std::vector<T> x = random_vector<T>(n, 1);
  const std::vector<T> pos = random_vector<T>(n, 2, 0.1, 3.0);  // for log, sqrt, power
  const DeviceBuffer dx(x), dpos(pos), dout(n * sizeof(T));
  const backend::Unary all[] = {backend::Unary::Neg,  backend::Unary::Exp,    backend::Unary::Log,
                                backend::Unary::Sqrt, backend::Unary::Tanh,   backend::Unary::Gelu,
                                backend::Unary::Silu, backend::Unary::Square, backend::Unary::Reciprocal,
                                backend::Unary::Abs};
  for (int kind = 0; kind < 3; ++kind)
    for (backend::Unary f : all) {
      if (kind > 0 && f != backend::Unary::Neg) continue;  // Affine and Power once each
      const bool positive = f == backend::Unary::Log || f == backend::Unary::Sqrt || kind == 2;
      backend::MapParams p;
      p.dtype = dt<T>();
      p.kind = static_cast<backend::MapKind>(kind);
      p.unary = f;
      p.alpha = kind == 2 ? 1.7 : 0.75;
      p.beta = -0.25;
      p.shape = shape;
      p.x_strides = strides;
      std::vector<T> want(n);
      p.out = want.data();
      p.x = positive ? pos.data() : x.data();
      backend::elementwise_map(p);
      p.device = gpu();
      p.out = dout.get();
      p.x = positive ? dpos.get() : dx.get();
      backend::elementwise_map(p);
      expect_close(dout.read<T>(n), want, 64, "elementwise_map");
    }
}

TEST(CudaOps, ElementwiseMapsStrided) {
  if (device_count(DeviceType::CUDA) == 0) GTEST_SKIP() << "skipped: no GPU";
  for (bool transposed : {true, false}) {
    check_maps<float>(transposed);
    check_maps<double>(transposed);
  }
}

template <class T>
void check_binary(bool contiguous_a) {
  // a [4, 1, 6] and b [5, 6] broadcast to [4, 5, 6]; or a contiguous [4, 5, 6] and b a [6] bias.
  const Shape shape{4, 5, 6};
  const std::vector<T> a = random_vector<T>(120, 3), b = random_vector<T>(30, 4, 0.5, 2.0);
  const DeviceBuffer da(a), db(b), dout(120 * sizeof(T));
  for (int op = 0; op < 6; ++op) {
    backend::BinaryParams p;
    p.dtype = dt<T>();
    p.op = static_cast<backend::Binary>(op);
    p.shape = shape;
    p.a_strides = contiguous_a ? Shape{30, 6, 1} : Shape{6, 0, 1};
    p.b_strides = contiguous_a ? Shape{0, 0, 1} : Shape{0, 6, 1};
    std::vector<T> want(120);
    p.out = want.data();
    p.a = a.data();
    p.b = b.data();
    backend::elementwise_binary(p);
    p.device = gpu();
    p.out = dout.get();
    p.a = da.get();
    p.b = db.get();
    backend::elementwise_binary(p);
    expect_close(dout.read<T>(120), want, 4, "elementwise_binary");
  }
}

TEST(CudaOps, ElementwiseBinaryBroadcast) {
  if (device_count(DeviceType::CUDA) == 0) GTEST_SKIP() << "skipped: no GPU";
  for (bool contiguous_a : {false, true}) {
    check_binary<float>(contiguous_a);
    check_binary<double>(contiguous_a);
  }
}

template <class T>
void check_activation_grad_and_axpy() {
  const size_t n = 1000;
  const std::vector<T> g = random_vector<T>(n, 5), x = random_vector<T>(n, 6, -6.0, 6.0);
  const DeviceBuffer dg(g), dx(x), dout(n * sizeof(T));
  for (backend::UnaryGrad f : {backend::UnaryGrad::Gelu, backend::UnaryGrad::Silu}) {
    backend::ActivationGradParams p;
    p.dtype = dt<T>();
    p.f = f;
    p.n = static_cast<int64_t>(n);
    std::vector<T> want(n);
    p.out = want.data();
    p.g = g.data();
    p.x = x.data();
    backend::activation_grad(p);
    p.device = gpu();
    p.out = dout.get();
    p.g = dg.get();
    p.x = dx.get();
    backend::activation_grad(p);
    expect_close(dout.read<T>(n), want, 64, "activation_grad");
  }
  std::vector<T> dst = random_vector<T>(n, 7);
  const DeviceBuffer ddst(dst);
  backend::AxpyParams p;
  p.dtype = dt<T>();
  p.n = static_cast<int64_t>(n);
  p.alpha = -0.3;
  p.dst = dst.data();
  p.src = g.data();
  backend::axpy(p);
  p.device = gpu();
  p.dst = ddst.get();
  p.src = dg.get();
  backend::axpy(p);
  expect_close(ddst.read<T>(n), dst, 4, "axpy");
}

TEST(CudaOps, ActivationGradAndAxpy) {
  if (device_count(DeviceType::CUDA) == 0) GTEST_SKIP() << "skipped: no GPU";
  check_activation_grad_and_axpy<float>();
  check_activation_grad_and_axpy<double>();
}

// ---- rows ----

template <class T>
void check_reduce() {
  const int64_t rows = 7, n = 1000;
  std::vector<T> x = random_vector<T>(static_cast<size_t>(rows * n), 8);
  x[3 * n + 10] = x[3 * n + 900] = T(5);                          // a tie: the first index wins
  x[5 * n + 400] = x[5 * n + 20] = std::numeric_limits<T>::quiet_NaN();  // NaN wins, the first one
  const DeviceBuffer dx(x), dout(static_cast<size_t>(rows) * sizeof(T)), darg(static_cast<size_t>(rows) * 4);
  backend::ReduceRowsParams p;
  p.dtype = dt<T>();
  p.rows = rows;
  p.n = n;
  p.op = backend::RowReduce::Max;
  std::vector<T> want(static_cast<size_t>(rows));
  std::vector<int32_t> want_arg(static_cast<size_t>(rows));
  p.x = x.data();
  p.out = want.data();
  p.arg = want_arg.data();
  backend::reduce_rows(p);
  p.device = gpu();
  p.x = dx.get();
  p.out = dout.get();
  p.arg = darg.as<int32_t>();
  backend::reduce_rows(p);
  expect_bitwise(darg.read<int32_t>(static_cast<size_t>(rows)), want_arg, "reduce_rows max arg");
  expect_close(dout.read<T>(static_cast<size_t>(rows)), want, 0, "reduce_rows max");

  // MaxBackward scatters one value per row to its argmax in a zeroed [rows, n].
  const std::vector<T> g = random_vector<T>(static_cast<size_t>(rows), 9);
  const DeviceBuffer dg(g), dgx(std::vector<T>(static_cast<size_t>(rows * n), T(0)));
  std::vector<T> want_gx(static_cast<size_t>(rows * n), T(0));
  p.device = Device::cpu();
  p.op = backend::RowReduce::MaxBackward;
  p.x = g.data();
  p.out = want_gx.data();
  p.arg = want_arg.data();
  backend::reduce_rows(p);
  p.device = gpu();
  p.x = dg.get();
  p.out = dgx.get();
  p.arg = darg.as<int32_t>();
  backend::reduce_rows(p);
  expect_bitwise(dgx.read<T>(static_cast<size_t>(rows * n)), want_gx, "reduce_rows max backward");

  x[5 * n + 400] = x[5 * n + 20] = T(0);
  const DeviceBuffer dx2(x);
  p.device = Device::cpu();
  p.op = backend::RowReduce::Sum;
  p.scale = 0.125;
  p.x = x.data();
  p.out = want.data();
  backend::reduce_rows(p);
  p.device = gpu();
  p.x = dx2.get();
  p.out = dout.get();
  backend::reduce_rows(p);
  expect_close(dout.read<T>(static_cast<size_t>(rows)), want, static_cast<double>(n), "reduce_rows sum");
}

TEST(CudaOps, ReduceRows) {
  if (device_count(DeviceType::CUDA) == 0) GTEST_SKIP() << "skipped: no GPU";
  check_reduce<float>();
  check_reduce<double>();
}

template <class T>
void check_softmax() {
  const int64_t rows = 9, n = 777;
  const size_t total = static_cast<size_t>(rows * n);
  std::vector<T> x = random_vector<T>(total, 10, -8.0, 8.0);
  for (int64_t j = 0; j < n; ++j) x[static_cast<size_t>(2 * n + j)] = -std::numeric_limits<T>::infinity();  // masked row
  const std::vector<T> g = random_vector<T>(total, 11);
  for (bool log : {false, true}) {
    backend::SoftmaxParams p;
    p.dtype = dt<T>();
    p.log = log;
    p.rows = rows;
    p.n = n;
    std::vector<T> y(total);
    p.x = x.data();
    p.out = y.data();
    backend::softmax_rows(p);
    // In place on the GPU: out is x's buffer.
    const DeviceBuffer dx(x);
    p.device = gpu();
    p.x = dx.get();
    p.out = dx.get();
    backend::softmax_rows(p);
    expect_close(dx.read<T>(total), y, 16, log ? "log_softmax" : "softmax");

    // Backward on the rows without the masked one, dx written over g.
    std::vector<T> yb(y.begin() + 3 * n, y.end()), gb(g.begin() + 3 * n, g.end()), want(yb.size());
    backend::SoftmaxParams b = p;
    b.device = Device::cpu();
    b.backward = true;
    b.rows = rows - 3;
    b.x = yb.data();
    b.g = gb.data();
    b.out = want.data();
    backend::softmax_rows(b);
    const DeviceBuffer dy(yb), dgb(gb);
    b.device = gpu();
    b.x = dy.get();
    b.g = dgb.get();
    b.out = dgb.get();
    backend::softmax_rows(b);
    expect_close(dgb.read<T>(want.size()), want, 64, log ? "log_softmax backward" : "softmax backward");
  }
}

TEST(CudaOps, SoftmaxForwardBackwardInPlace) {
  if (device_count(DeviceType::CUDA) == 0) GTEST_SKIP() << "skipped: no GPU";
  check_softmax<float>();
  check_softmax<double>();
}

template <class T>
void check_norm(bool layer, bool weighted) {
  const int64_t rows = 130, n = 300;  // more rows than kNormRowBlocks
  const size_t total = static_cast<size_t>(rows * n);
  const std::vector<T> x = random_vector<T>(total, 12, -3.0, 5.0), g = random_vector<T>(total, 13);
  const std::vector<T> w = random_vector<T>(static_cast<size_t>(n), 14), b = random_vector<T>(static_cast<size_t>(n), 15);
  const DeviceBuffer dx(x), dg(g), dw(w), db(b);
  const DeviceBuffer dy(total * sizeof(T)), dmean(static_cast<size_t>(rows) * sizeof(T)),
      drstd(static_cast<size_t>(rows) * sizeof(T)), ddx(total * sizeof(T)), ddw(static_cast<size_t>(n) * sizeof(T)),
      ddb(static_cast<size_t>(n) * sizeof(T));
  std::vector<T> y(total), mean(static_cast<size_t>(rows)), rstd(static_cast<size_t>(rows));
  backend::NormParams p;
  p.dtype = dt<T>();
  p.op = layer ? backend::NormOp::LayerNorm : backend::NormOp::RmsNorm;
  p.rows = rows;
  p.n = n;
  p.eps = 1e-5;
  p.x = x.data();
  p.weight = weighted ? w.data() : nullptr;
  p.bias = layer && weighted ? b.data() : nullptr;
  p.y = y.data();
  p.mean = layer ? mean.data() : nullptr;
  p.rstd = rstd.data();
  backend::norm_rows(p);
  p.device = gpu();
  p.x = dx.get();
  p.weight = weighted ? dw.get() : nullptr;
  p.bias = layer && weighted ? db.get() : nullptr;
  p.y = dy.get();
  p.mean = layer ? dmean.get() : nullptr;
  p.rstd = drstd.get();
  backend::norm_rows(p);
  expect_close(dy.read<T>(total), y, 64, "norm forward y");
  expect_close(drstd.read<T>(static_cast<size_t>(rows)), rstd, 16, "norm forward rstd");
  if (layer) expect_close(dmean.read<T>(static_cast<size_t>(rows)), mean, 16, "norm forward mean");

  // Backward from the CPU's statistics on both sides.
  const DeviceBuffer cmean(mean), crstd(rstd);
  std::vector<T> gx(total), gw(static_cast<size_t>(n)), gb(static_cast<size_t>(n));
  backend::NormParams q;
  q.dtype = dt<T>();
  q.op = backend::NormOp::Backward;
  q.rows = rows;
  q.n = n;
  q.x = x.data();
  q.weight = weighted ? w.data() : nullptr;
  q.mean = layer ? mean.data() : nullptr;
  q.rstd = rstd.data();
  q.g = g.data();
  q.dx = gx.data();
  q.dweight = gw.data();
  q.dbias = layer ? gb.data() : nullptr;
  backend::norm_rows(q);
  q.device = gpu();
  q.x = dx.get();
  q.weight = weighted ? dw.get() : nullptr;
  q.mean = layer ? cmean.get() : nullptr;
  q.rstd = crstd.get();
  q.g = dg.get();
  q.dx = ddx.get();
  q.dweight = ddw.get();
  q.dbias = layer ? ddb.get() : nullptr;
  backend::norm_rows(q);
  expect_close(ddx.read<T>(total), gx, 256, "norm backward dx");
  expect_close(ddw.read<T>(static_cast<size_t>(n)), gw, 64, "norm backward dweight");
  if (layer) expect_close(ddb.read<T>(static_cast<size_t>(n)), gb, 64, "norm backward dbias");
}

TEST(CudaOps, LayerNormAndRmsNorm) {
  if (device_count(DeviceType::CUDA) == 0) GTEST_SKIP() << "skipped: no GPU";
  for (bool layer : {true, false})
    for (bool weighted : {true, false}) {
      check_norm<float>(layer, weighted);
      check_norm<double>(layer, weighted);
    }
}

template <class T>
void check_rope(bool inverse) {
  // x a [B, H, N, D] view of a [B, N, H, D] buffer (heads and rows swapped); positions per batch row.
  const int64_t B = 2, H = 3, N = 17, D = 16;
  const size_t total = static_cast<size_t>(B * H * N * D);
  const std::vector<T> x = random_vector<T>(total, 16);
  std::vector<int32_t> pos(static_cast<size_t>(B * N));
  for (size_t i = 0; i < pos.size(); ++i) pos[i] = static_cast<int32_t>(1000 + 37 * i);
  const DeviceBuffer dx(x), dpos(pos), dy(total * sizeof(T));
  backend::RopeParams p;
  p.dtype = dt<T>();
  p.batch = B;
  p.heads = H;
  p.seq = N;
  p.head_dim = D;
  p.x_batch_stride = N * H * D;
  p.x_head_stride = D;
  p.x_row_stride = H * D;
  p.x_dim_stride = 1;
  p.pos_batch_stride = N;
  p.pos_row_stride = 1;
  p.base = 10000.0;
  p.inverse = inverse;
  std::vector<T> y(total);
  p.x = x.data();
  p.y = y.data();
  p.positions = pos.data();
  backend::rope(p);
  p.device = gpu();
  p.x = dx.get();
  p.y = dy.get();
  p.positions = dpos.as<int32_t>();
  backend::rope(p);
  expect_close(dy.read<T>(total), y, 16, "rope");
}

TEST(CudaOps, RopeStridedPerBatchPositions) {
  if (device_count(DeviceType::CUDA) == 0) GTEST_SKIP() << "skipped: no GPU";
  for (bool inverse : {false, true}) {
    check_rope<float>(inverse);
    check_rope<double>(inverse);
  }
}

// ---- embedding ----

template <class T>
void check_embedding() {
  const int64_t V = 50, C = 33, n = 200;
  const std::vector<T> table = random_vector<T>(static_cast<size_t>(V * C), 17);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 7) % 13);  // repeated ids, rows left empty
  const DeviceBuffer dtable(table), dids(ids), dout(static_cast<size_t>(n * C) * sizeof(T));
  backend::EmbeddingParams p;
  p.dtype = dt<T>();
  p.n = n;
  p.V = V;
  p.C = C;
  p.op = backend::EmbeddingOp::Gather;
  std::vector<T> want(static_cast<size_t>(n * C));
  p.ids = ids.data();
  p.src = table.data();
  p.dst = want.data();
  backend::embedding(p);
  p.device = gpu();
  p.ids = dids.as<int32_t>();
  p.src = dtable.get();
  p.dst = dout.get();
  backend::embedding(p);
  expect_bitwise(dout.read<T>(want.size()), want, "embedding gather");

  // Scatter-add: the same order of additions, so the same bits.
  const std::vector<T> g = random_vector<T>(static_cast<size_t>(n * C), 18);
  const DeviceBuffer dg(g), dtab(static_cast<size_t>(V * C) * sizeof(T));
  std::vector<T> want_tab(static_cast<size_t>(V * C));
  p.device = Device::cpu();
  p.op = backend::EmbeddingOp::ScatterAdd;
  p.ids = ids.data();
  p.src = g.data();
  p.dst = want_tab.data();
  backend::embedding(p);
  p.device = gpu();
  p.ids = dids.as<int32_t>();
  p.src = dg.get();
  p.dst = dtab.get();
  backend::embedding(p);
  expect_bitwise(dtab.read<T>(want_tab.size()), want_tab, "embedding scatter-add");
}

TEST(CudaOps, EmbeddingGatherScatterAdd) {
  if (device_count(DeviceType::CUDA) == 0) GTEST_SKIP() << "skipped: no GPU";
  check_embedding<float>();
  check_embedding<double>();
}

TEST(CudaOps, EmbeddingCheckIdsFindsTheFirstBadId) {
  if (device_count(DeviceType::CUDA) == 0) GTEST_SKIP() << "skipped: no GPU";
  const std::vector<int32_t> ids{3, 0, 9, 10, -1, 12};
  const DeviceBuffer dids(ids);
  backend::EmbeddingParams p;
  p.device = gpu();
  p.op = backend::EmbeddingOp::CheckIds;
  p.ids = dids.as<int32_t>();
  p.n = 6;
  p.V = 10;
  int64_t bad = -7;
  int32_t bad_id = 0;
  p.first_bad = &bad;
  p.bad_id = &bad_id;
  backend::embedding(p);
  EXPECT_EQ(bad, 3);
  EXPECT_EQ(bad_id, 10);
  p.n = 3;
  backend::embedding(p);
  EXPECT_EQ(bad, -1);
}

#if defined(STRAND_WITH_CUDA)
template <class Params>
bool cuda_registered() {
  ensure_backends_registered();
  return backend::KernelSlot<Params>::fns[static_cast<size_t>(DeviceType::CUDA)] != nullptr;
}

// Needs no GPU: a CUDA build registers a kernel for every non-attention family.
TEST(CudaOps, EveryNonAttentionFamilyIsRegisteredInACudaBuild) {
  using namespace backend;
  EXPECT_TRUE(cuda_registered<MapParams>());
  EXPECT_TRUE(cuda_registered<BinaryParams>());
  EXPECT_TRUE(cuda_registered<ActivationGradParams>());
  EXPECT_TRUE(cuda_registered<AxpyParams>());
  EXPECT_TRUE(cuda_registered<ReduceRowsParams>());
  EXPECT_TRUE(cuda_registered<GemmParams>());
  EXPECT_TRUE(cuda_registered<SoftmaxParams>());
  EXPECT_TRUE(cuda_registered<NormParams>());
  EXPECT_TRUE(cuda_registered<EmbeddingParams>());
  EXPECT_TRUE(cuda_registered<CrossEntropyParams>());
  EXPECT_TRUE(cuda_registered<DistillLossParams>());
  EXPECT_TRUE(cuda_registered<DropoutParams>());
  EXPECT_TRUE(cuda_registered<CopyBlocksParams>());
  EXPECT_TRUE(cuda_registered<RopeParams>());
  EXPECT_TRUE(cuda_registered<AdamWParams>());
  EXPECT_TRUE(cuda_registered<ClipParams>());
}
#endif

}  // namespace
}  // namespace strand
