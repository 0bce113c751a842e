// The world group's operations under mpiexec (1, 2 and 4 ranks): every collective and the
// point-to-point calls against values each rank computes locally for all ranks.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "framework/core/device_runtime.h"
#include "framework/core/error.h"
#include "parallel/comm/group.h"
#include "support/tolerance.h"

namespace strand::parallel {
namespace {

Group& W() { return world(); }

double epsilon(DType t) {
  return t == DType::F32 ? strand::testing::kEpsF32 : strand::testing::kEpsF64;
}

// Rank-dependent data: fractions with inexact binary forms (their sums round), small integers for
// int32. Built from integer arithmetic and one division so that every rank computes the same bits
// whatever the compiler contracts into FMAs.
double value(int rank, int64_t i, DType t) {
  if (t == DType::I32) return static_cast<double>((i * 7 + rank * 13) % 23 - 11);
  const double v = static_cast<double>((i * 7919 + rank * 104729) % 2001 - 1000) / (7.0 * (rank + 1));
  return t == DType::F32 ? static_cast<double>(static_cast<float>(v)) : v;
}

Tensor rank_tensor(int rank, const Shape& shape, DType t) {
  std::vector<double> values(static_cast<size_t>(numel_of(shape)));
  for (size_t i = 0; i < values.size(); ++i) values[i] = value(rank, static_cast<int64_t>(i), t);
  return Tensor::from_vector(values, shape, t);
}

// The reduction over all ranks of value(r, i), and a bound on its rounding error.
struct Expected {
  std::vector<double> values;
  std::vector<double> tolerance;
};

Expected reduced(ReduceOp op, int64_t n, int size, DType t, int64_t offset = 0) {
  Expected e;
  for (int64_t i = 0; i < n; ++i) {
    double acc = value(0, offset + i, t), magnitude = std::abs(acc);
    for (int r = 1; r < size; ++r) {
      const double v = value(r, offset + i, t);
      magnitude += std::abs(v);
      acc = op == ReduceOp::Sum ? acc + v : op == ReduceOp::Max ? std::max(acc, v) : std::min(acc, v);
    }
    e.values.push_back(acc);
    // Max and min are exact; a sum in the dtype rounds at most once per addition.
    const bool exact = op != ReduceOp::Sum || t == DType::I32;
    e.tolerance.push_back(exact ? 0.0 : epsilon(t) * size * magnitude);
  }
  return e;
}

void expect_values(const Tensor& got, const Expected& want, const char* what) {
  const std::vector<double> v = got.to_vector();
  ASSERT_EQ(v.size(), want.values.size()) << what;
  for (size_t i = 0; i < v.size(); ++i)
    EXPECT_NEAR(v[i], want.values[i], want.tolerance[i]) << what << " element " << i;
}

const char* op_name(ReduceOp op) { return op == ReduceOp::Sum ? "sum" : op == ReduceOp::Max ? "max" : "min"; }

TEST(Comm, WorldIsMpiUnderMpiexec) {
  EXPECT_EQ(W().backend(), "mpi");
  EXPECT_GE(W().rank(), 0);
  EXPECT_LT(W().rank(), W().size());
}

TEST(Comm, AllReduceEveryOpAndDtype) {
  const Shape shape{3, 5};
  for (DType t : {DType::F32, DType::F64, DType::I32}) {
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min}) {
      Tensor x = rank_tensor(W().rank(), shape, t);
      W().all_reduce(x, op);
      EXPECT_EQ(x.dtype(), t);
      expect_values(x, reduced(op, numel_of(shape), W().size(), t), op_name(op));
    }
  }
}

TEST(Comm, AllReduceScalars) {
  const int r = W().rank(), p = W().size();
  for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min}) {
    std::vector<double> d{r + 0.25, -1.5 * r, std::sin(r + 1.0)};
    std::vector<int64_t> n{r, (int64_t{1} << 40) * (r + 1), -3 * r + 1};
    W().all_reduce(std::span<double>(d), op);
    W().all_reduce(std::span<int64_t>(n), op);
    std::vector<double> want_d{0.25, 0.0, std::sin(1.0)};
    std::vector<int64_t> want_n{0, int64_t{1} << 40, 1};
    double magnitude = want_d[0] + want_d[2];
    for (int q = 1; q < p; ++q) {
      const double dq[3] = {q + 0.25, -1.5 * q, std::sin(q + 1.0)};
      const int64_t nq[3] = {q, (int64_t{1} << 40) * (q + 1), -3 * q + 1};
      for (int i = 0; i < 3; ++i) {
        magnitude += std::abs(dq[i]);
        want_d[i] = op == ReduceOp::Sum ? want_d[i] + dq[i] : op == ReduceOp::Max ? std::max(want_d[i], dq[i])
                                                                                   : std::min(want_d[i], dq[i]);
        want_n[i] = op == ReduceOp::Sum ? want_n[i] + nq[i] : op == ReduceOp::Max ? std::max(want_n[i], nq[i])
                                                                                   : std::min(want_n[i], nq[i]);
      }
    }
    const double tol = op == ReduceOp::Sum ? epsilon(DType::F64) * p * magnitude : 0.0;
    for (int i = 0; i < 3; ++i) {
      EXPECT_NEAR(d[i], want_d[i], tol) << op_name(op) << " double " << i;
      EXPECT_EQ(n[i], want_n[i]) << op_name(op) << " int64 " << i;
    }
  }
}

TEST(Comm, IallReduceCompletesAfterLocalWork) {
  Tensor x = rank_tensor(W().rank(), {64}, DType::F64);
  auto request = W().iall_reduce(x, ReduceOp::Sum);
  const Expected want = reduced(ReduceOp::Sum, 64, W().size(), DType::F64);  // overlapping work
  request->wait();
  EXPECT_TRUE(request->test());
  expect_values(x, want, "iall_reduce");
}

TEST(Comm, AllGatherConcatenatesInRankOrder) {
  for (DType t : {DType::F32, DType::F64, DType::I32, DType::BF16}) {
    const Tensor x = rank_tensor(W().rank(), {2, 3}, t);
    Tensor out = Tensor::zeros({2 * W().size(), 3}, t);
    W().all_gather(x, out);
    const std::vector<double> got = out.to_vector();
    for (int r = 0; r < W().size(); ++r) {
      const std::vector<double> want = rank_tensor(r, {2, 3}, t).to_vector();  // same rounding as sent
      for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[r * 6 + i], want[i]) << dtype_name(t) << " block " << r;
    }
  }
}

TEST(Comm, ReduceScatterKeepsThisRanksBlock) {
  const int p = W().size();
  for (DType t : {DType::F32, DType::F64}) {
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max}) {
      const Tensor x = rank_tensor(W().rank(), {2 * p, 3}, t);
      Tensor out = Tensor::zeros({2, 3}, t);
      W().reduce_scatter(x, out, op);
      expect_values(out, reduced(op, 6, p, t, /*offset=*/6 * W().rank()), op_name(op));
    }
  }
}

TEST(Comm, AllToAllRoutesBlocks) {
  const int p = W().size(), me = W().rank();
  // Block j of rank r holds r * 1000 + j * 10 + i: after the exchange block j came from rank j.
  std::vector<double> send;
  for (int j = 0; j < p; ++j)
    for (int i = 0; i < 6; ++i) send.push_back(me * 1000 + j * 10 + i);
  const Tensor x = Tensor::from_vector(send, {2 * p, 3}, DType::F32);
  Tensor out = Tensor::zeros({2 * p, 3}, DType::F32);
  W().all_to_all(x, out);
  const std::vector<double> got = out.to_vector();
  for (int j = 0; j < p; ++j)
    for (int i = 0; i < 6; ++i) EXPECT_EQ(got[j * 6 + i], j * 1000 + me * 10 + i) << "block " << j;
}

TEST(Comm, BroadcastFromEveryRoot) {
  for (int root = 0; root < W().size(); ++root) {
    Tensor x = rank_tensor(W().rank(), {4, 2}, DType::F64);
    W().broadcast(x, root);
    EXPECT_EQ(x.to_vector(), rank_tensor(root, {4, 2}, DType::F64).to_vector()) << "root " << root;
  }
  W().barrier();
}

TEST(Comm, RingExchangeOverlapsTwoMessages) {
  const int p = W().size(), me = W().rank();
  const int next = (me + 1) % p, prev = (me + p - 1) % p;
  // Two messages (as K and V blocks), receives posted in the opposite order: tags match them.
  const Tensor k = rank_tensor(me, {3, 4}, DType::F32);
  const Tensor v = rank_tensor(me + 100, {5}, DType::F64);
  Tensor k_in = Tensor::zeros({3, 4}, DType::F32), v_in = Tensor::zeros({5}, DType::F64);
  auto recv_v = W().irecv(v_in, prev, /*tag=*/2);
  auto recv_k = W().irecv(k_in, prev, /*tag=*/1);
  auto send_k = W().isend(k, next, 1);
  auto send_v = W().isend(v, next, 2);
  while (!recv_k->test()) {
  }
  recv_v->wait();
  send_k->wait();
  send_v->wait();
  EXPECT_EQ(k_in.to_vector(), rank_tensor(prev, {3, 4}, DType::F32).to_vector());
  EXPECT_EQ(v_in.to_vector(), rank_tensor(prev + 100, {5}, DType::F64).to_vector());
}

TEST(Comm, ShortMessageIsAShapeError) {
  if (W().size() < 2) GTEST_SKIP() << "needs two ranks";
  if (W().rank() == 0) W().isend(Tensor::zeros({3}), 1, 7)->wait();
  if (W().rank() == 1) {
    Tensor in = Tensor::zeros({5});
    auto request = W().irecv(in, 0, 7);
    try {
      request->wait();
      ADD_FAILURE() << "a 3-element message into a 5-element buffer was accepted";
    } catch (const ShapeError& e) {
      EXPECT_NE(std::string(e.what()).find("mpi irecv: expected 5 elements"), std::string::npos) << e.what();
    }
  }
  W().barrier();
}

TEST(Comm, MpiErrorsAreThrownWithTheOperation) {
  Tensor in = Tensor::zeros({2});
  try {
    W().irecv(in, 0, /*tag=*/-5);  // MPI rejects negative tags (other than MPI_ANY_TAG)
    ADD_FAILURE() << "MPI accepted tag -5";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("mpi irecv (MPI_Irecv): "), std::string::npos) << what;
    EXPECT_NE(what.find("MPI_ERR_TAG"), std::string::npos) << what;
  }
}

// bfloat16 sums (parallel.grad_dtype: bf16): a user-defined MPI operation adds the raw words in
// float32 and rounds back; sums that bfloat16 holds exactly come out exact, on every rank.
TEST(Comm, Bfloat16AllReduceSums) {
  const int p = W().size(), r = W().rank();
  Tensor t = Tensor::full({5}, 0.5 * (r + 1), DType::BF16);
  W().all_reduce(t);
  for (double x : t.to_vector()) EXPECT_EQ(x, 0.25 * p * (p + 1));
  Tensor u = Tensor::full({3}, -1.0 - r, DType::BF16);
  W().iall_reduce(u)->wait();
  for (double x : u.to_vector()) EXPECT_EQ(x, -0.5 * p * (p + 1));
}

TEST(Comm, BadArgumentsFailOnEveryRankBeforeCommunicating) {
  const int p = W().size();
  Tensor out = Tensor::zeros({p + 1, 3});
  try {
    W().all_gather(Tensor::zeros({1, 3}), out);
    ADD_FAILURE() << "all_gather accepted a wrong out shape";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("mpi all_gather: out must be float32[" + std::to_string(p) + ", 3]"),
              std::string::npos)
        << e.what();
  }
  Tensor transposed = Tensor::zeros({3, 4}).as_strided({4, 3}, {1, 4}, 0);
  EXPECT_THROW(W().all_reduce(transposed), ValueError);
  Tensor half = Tensor::zeros({4}, DType::F16);
  EXPECT_THROW(W().all_reduce(half), DTypeError);  // MPI has no float16 sum, and strand adds none
  Tensor bf16 = Tensor::zeros({4}, DType::BF16);
  EXPECT_THROW(W().all_reduce(bf16, ReduceOp::Max), DTypeError);  // bfloat16 reduces by a sum only
  EXPECT_THROW(W().isend(Tensor::zeros({2}), p, 0), ValueError);
  Tensor x = Tensor::zeros({p + 1});
  EXPECT_THROW(W().reduce_scatter(x, out), ShapeError);
  EXPECT_THROW(W().broadcast(x, -1), ValueError);
}

TEST(Comm, InPlaceGatherOfOverlappingBuffers) {
  // t is this rank's block of out itself, as a sequence-parallel all-gather may pass it.
  const int p = W().size(), me = W().rank();
  Tensor out = Tensor::zeros({p, 2}, DType::F64);
  Tensor mine = out.as_strided({1, 2}, {2, 1}, 2 * me);
  mine.copy_from(Tensor::full({1, 2}, me + 0.5, DType::F64));
  W().all_gather(mine, out);
  const std::vector<double> got = out.to_vector();
  for (int r = 0; r < p; ++r) EXPECT_EQ(got[2 * r], r + 0.5);
}

TEST(Comm, SplitByColorOrdersByKey) {
  const int p = W().size(), me = W().rank();
  // Parity groups, ordered by descending world rank (key = -rank).
  auto part = W().split(me % 2, -me);
  ASSERT_NE(part, nullptr);
  std::vector<int> members;
  for (int r = p - 1; r >= 0; --r)
    if (r % 2 == me % 2) members.push_back(r);
  ASSERT_EQ(part->size(), static_cast<int>(members.size()));
  EXPECT_EQ(members[part->rank()], me);
  EXPECT_EQ(part->backend(), "mpi");
  Tensor id = Tensor::full({1}, me, DType::I32), all = Tensor::zeros({part->size()}, DType::I32);
  part->all_gather(id, all);
  std::vector<double> want(members.begin(), members.end());
  EXPECT_EQ(all.to_vector(), want);
  // A negative color leaves rank 0 out.
  auto rest = W().split(me == 0 ? -1 : 0, me);
  if (me == 0) {
    EXPECT_EQ(rest, nullptr);
  } else {
    ASSERT_NE(rest, nullptr);
    EXPECT_EQ(rest->size(), p - 1);
    EXPECT_EQ(rest->rank(), me - 1);
  }
}

TEST(Comm, EveryRankOfAOneMachineJobSharesItsMachine) {
  // mpiexec started every rank here: all of them share this machine's memory.
  EXPECT_EQ(ranks_on_this_machine(W()), W().size());
}

TEST(Comm, DeviceTensorsAreStagedThroughHost) {
  // Skips uniformly: every rank of a test job sees the same machine.
  if (device_count(DeviceType::CUDA) == 0) GTEST_SKIP() << "no GPU";
  const Device gpu = Device::cuda(0);
  Tensor x = rank_tensor(W().rank(), {4, 3}, DType::F32).copy_as(DType::F32, gpu);
  W().all_reduce(x);
  EXPECT_TRUE(x.device().is_cuda());
  expect_values(x, reduced(ReduceOp::Sum, 12, W().size(), DType::F32), "cuda all_reduce");
  Tensor out = Tensor::zeros({4 * W().size(), 3}, DType::F32, gpu);
  W().all_gather(rank_tensor(W().rank(), {4, 3}, DType::F32).copy_as(DType::F32, gpu), out);
  for (int r = 0; r < W().size(); ++r) {
    const std::vector<double> got = out.to_vector();
    const std::vector<double> want = rank_tensor(r, {4, 3}, DType::F32).to_vector();
    EXPECT_TRUE(std::equal(want.begin(), want.end(), got.begin() + 12 * r)) << "block " << r;
  }
}

}  // namespace
}  // namespace strand::parallel
